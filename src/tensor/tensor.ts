/**
 * The Tensor: a typed, strided view onto a reference-counted backend buffer, plus the autograd fields.
 *
 * Element (i0, i1, …) of a tensor lives at `offset + Σ ik·strides[k]` of its storage. Views (reshape of
 * a contiguous tensor, transpose, narrow, expand, …) make a new Tensor over the same storage with other
 * strides — no copy. Operations are synchronous to call; only reading values back (`data`, `item`,
 * `toArray`) is async, because a GPU backend has to finish its queued work first.
 */
import { backward } from '../autograd/backward.js';
import type { GradFn } from '../autograd/graph.js';
import type { View } from '../backends/backend.js';
import type { DType, TypedArray } from './dtype.js';
import * as el from './ops/elementwise.js';
import * as mm from './ops/matmul.js';
import * as red from './ops/reduce.js';
import * as sm from './ops/softmax.js';
import * as vw from './ops/views.js';
import { track } from './scope.js';
import { contiguousStrides, type Shape, sizeOf } from './shape.js';
import type { Storage } from './storage.js';

/** A nested array of numbers, as `toArray` returns it. */
export type NestedArray = number | NestedArray[];

type Operand = Tensor | number;

export class Tensor {
  /** Whether backward should compute a gradient for this tensor. */
  requiresGrad = false;
  /** d loss / d this, filled by `backward()` for tensors with `requiresGrad` and no `gradFn`. */
  grad: Tensor | null = null;
  /** How this tensor was computed, if it was recorded for autograd. */
  gradFn: GradFn | null = null;
  private disposed = false;

  constructor(
    readonly storage: Storage,
    readonly shape: Shape,
    readonly strides: readonly number[] = contiguousStrides(shape),
    readonly offset = 0,
  ) {
    track(this);
  }

  get dtype(): DType {
    return this.storage.dtype;
  }
  get rank(): number {
    return this.shape.length;
  }
  get size(): number {
    return sizeOf(this.shape);
  }
  get backend(): string {
    return this.storage.backend.name;
  }
  get isDisposed(): boolean {
    return this.disposed;
  }

  /** True when the elements lie in row-major order with no gaps (a copy would change nothing). */
  get isContiguous(): boolean {
    const expected = contiguousStrides(this.shape);
    return this.shape.every((d, i) => d === 1 || this.strides[i] === expected[i]);
  }

  /** What kernels see: the buffer and the layout. */
  view(): View {
    if (this.disposed) throw new Error(`This tensor of shape [${this.shape.join(', ')}] was disposed and cannot be used.`);
    return { buffer: this.storage.buffer, dtype: this.dtype, shape: this.shape, strides: this.strides, offset: this.offset };
  }

  /** A new tensor over the same storage with another layout (the building block of views). */
  withLayout(shape: Shape, strides: readonly number[], offset: number): Tensor {
    this.view(); // throws when disposed
    return new Tensor(this.storage.retain(), shape, strides, offset);
  }

  /** Another handle on the same elements; disposing one leaves the other intact. */
  alias(): Tensor {
    return this.withLayout(this.shape, this.strides, this.offset);
  }

  /** Frees this tensor's hold on its storage. Safe to call twice. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.storage.release();
    this.grad?.dispose();
    this.grad = null;
    this.gradFn = null;
  }

  // ---- reading values (async: waits for the backend) ----

  /** The elements in row-major order. */
  async data(): Promise<TypedArray> {
    const c = this.isContiguous ? this : this.contiguous();
    try {
      return await this.storage.backend.read(c.storage.buffer, c.dtype, c.offset, c.size);
    } finally {
      if (c !== this) c.dispose();
    }
  }

  /** The single value of a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new Error(`item: the tensor has shape [${this.shape.join(', ')}], not one element.`);
    return (await this.data())[0] as number;
  }

  /** The elements as nested arrays following the shape. */
  async toArray(): Promise<NestedArray> {
    const flat = Array.from(await this.data());
    const build = (axis: number, start: number): NestedArray => {
      if (axis === this.rank) return flat[start] as number;
      const inner = sizeOf(this.shape.slice(axis + 1));
      return Array.from({ length: this.shape[axis] as number }, (_, i) => build(axis + 1, start + i * inner));
    };
    return build(0, 0);
  }

  // ---- autograd ----

  /** Marks a leaf tensor as a parameter to differentiate with respect to. */
  requireGrad(flag = true): this {
    if (this.gradFn) throw new Error('requireGrad: only leaf tensors (not computed by recorded ops) can be marked.');
    this.requiresGrad = flag;
    return this;
  }

  /** Back-propagates from this tensor; see `backward` in src/autograd/backward.ts. */
  backward(grad?: Tensor): void {
    backward(this, grad);
  }

  /** The same values, cut off from the graph. */
  detach(): Tensor {
    return this.alias();
  }

  /** Copies `src`'s values into this tensor in place (no autograd); used by optimizers. */
  assign(src: Tensor): this {
    el.assign(this, src);
    return this;
  }

  // ---- element-wise ----
  add(b: Operand): Tensor {
    return el.add(this, b);
  }
  sub(b: Operand): Tensor {
    return el.sub(this, b);
  }
  mul(b: Operand): Tensor {
    return el.mul(this, b);
  }
  div(b: Operand): Tensor {
    return el.div(this, b);
  }
  pow(b: Operand): Tensor {
    return el.pow(this, b);
  }
  maximum(b: Operand): Tensor {
    return el.maximum(this, b);
  }
  minimum(b: Operand): Tensor {
    return el.minimum(this, b);
  }
  eq(b: Operand): Tensor {
    return el.eq(this, b);
  }
  ne(b: Operand): Tensor {
    return el.ne(this, b);
  }
  lt(b: Operand): Tensor {
    return el.lt(this, b);
  }
  le(b: Operand): Tensor {
    return el.le(this, b);
  }
  gt(b: Operand): Tensor {
    return el.gt(this, b);
  }
  ge(b: Operand): Tensor {
    return el.ge(this, b);
  }
  neg(): Tensor {
    return el.neg(this);
  }
  exp(): Tensor {
    return el.exp(this);
  }
  log(): Tensor {
    return el.log(this);
  }
  sqrt(): Tensor {
    return el.sqrt(this);
  }
  rsqrt(): Tensor {
    return el.rsqrt(this);
  }
  tanh(): Tensor {
    return el.tanh(this);
  }
  sigmoid(): Tensor {
    return el.sigmoid(this);
  }
  silu(): Tensor {
    return el.silu(this);
  }
  gelu(): Tensor {
    return el.gelu(this);
  }
  softplus(): Tensor {
    return el.softplus(this);
  }
  relu(): Tensor {
    return el.relu(this);
  }
  abs(): Tensor {
    return el.abs(this);
  }
  square(): Tensor {
    return el.mul(this, this);
  }
  astype(dtype: DType): Tensor {
    return el.astype(this, dtype);
  }
  /** A dense copy starting at element 0 when the layout is strided or offset; an alias otherwise. */
  contiguous(): Tensor {
    return el.contiguous(this);
  }

  // ---- reductions ----
  sum(axes?: number | number[], keepdim = false): Tensor {
    return red.sum(this, axes, keepdim);
  }
  mean(axes?: number | number[], keepdim = false): Tensor {
    return red.mean(this, axes, keepdim);
  }
  max(axes?: number | number[], keepdim = false): Tensor {
    return red.max(this, axes, keepdim);
  }
  min(axes?: number | number[], keepdim = false): Tensor {
    return red.min(this, axes, keepdim);
  }
  argmax(axis = -1, keepdim = false): Tensor {
    return red.argmax(this, axis, keepdim);
  }
  logsumexp(axes?: number | number[], keepdim = false): Tensor {
    return red.logsumexp(this, axes, keepdim);
  }
  softmax(axis = -1): Tensor {
    return sm.softmax(this, axis);
  }
  logSoftmax(axis = -1): Tensor {
    return sm.logSoftmax(this, axis);
  }
  matmul(b: Tensor): Tensor {
    return mm.matmul(this, b);
  }

  // ---- views ----
  reshape(shape: readonly number[]): Tensor {
    return vw.reshape(this, shape);
  }
  permute(axes: readonly number[]): Tensor {
    return vw.permute(this, axes);
  }
  transpose(a = -2, b = -1): Tensor {
    return vw.transpose(this, a, b);
  }
  narrow(axis: number, start: number, length: number): Tensor {
    return vw.narrow(this, axis, start, length);
  }
  select(axis: number, index: number): Tensor {
    return vw.select(this, axis, index);
  }
  expand(shape: readonly number[]): Tensor {
    return vw.expand(this, shape);
  }
  squeeze(axis?: number): Tensor {
    return vw.squeeze(this, axis);
  }
  unsqueeze(axis: number): Tensor {
    return vw.unsqueeze(this, axis);
  }
  flatten(start = 0, end = -1): Tensor {
    return vw.flatten(this, start, end);
  }

  toString(): string {
    return `Tensor(shape=[${this.shape.join(', ')}], dtype=${this.dtype}, backend=${this.backend}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }
}
