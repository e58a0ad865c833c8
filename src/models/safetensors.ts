/**
 * Reading and writing tensors in the safetensors format (https://github.com/huggingface/safetensors),
 * which PyTorch, JAX and the Hugging Face hub read, so weights move between them and tensorscan:
 *
 *     [ N: u64 little-endian ][ header: N bytes of JSON, padded with spaces ][ data: raw bytes ]
 *
 *     header = { "<name>": { "dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end] }, …,
 *                "__metadata__": { "<key>": "<string>" } }                  (metadata optional)
 *
 * Offsets count from the start of the data section; the tensors tile it with no gaps. Elements are
 * little-endian, row-major. We write the header padded so the data starts at a multiple of 8 bytes,
 * and lay the tensors out widest element type first, so every tensor starts aligned to its element
 * size (readers that map the file can use it in place).
 */

import { readFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import { Float16Array } from '@petamoriken/float16';
import { BYTES_PER_ELEMENT, type DType, type TypedArray } from '../tensor/dtype.js';
import { tensor } from '../tensor/ops/creation.js';
import { shapeToString, sizeOf } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';
import { writeFileAtomic } from './atomic-write.js';

/** safetensors' dtype names for the dtypes tensorscan has. */
const FILE_DTYPE: Record<DType, string> = { float32: 'F32', float16: 'F16', int32: 'I32', float64: 'F64' };
const FROM_FILE_DTYPE = new Map(Object.entries(FILE_DTYPE).map(([ours, theirs]) => [theirs, ours as DType]));

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/** The raw bytes of a typed array's elements (a view, not a copy). */
const bytesOf = (a: TypedArray): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** A typed array of `dtype` over a fresh copy of `bytes` (the copy starts at offset 0, so it is aligned). */
function arrayFrom(bytes: Uint8Array, dtype: DType): TypedArray {
  const buffer = new Uint8Array(bytes).buffer; // a copy (Buffer's own slice() would share the file's memory)
  switch (dtype) {
    case 'float32':
      return new Float32Array(buffer);
    case 'int32':
      return new Int32Array(buffer);
    case 'float16':
      return new Float16Array(buffer);
    case 'float64':
      return new Float64Array(buffer);
  }
}

/** Typed arrays use the machine's byte order; safetensors is little-endian, as x86 and ARM are. */
function checkLittleEndian(): void {
  if (endianness() !== 'LE')
    throw new Error('safetensors: this machine is big-endian; reading and writing safetensors needs little-endian.');
}

/**
 * Saves named tensors (in the given order of names) with optional string metadata. Reads every tensor
 * back from its backend first, so it waits for pending GPU work.
 */
export async function saveSafetensors(
  path: string,
  tensors: Map<string, Tensor> | [string, Tensor][],
  metadata?: Record<string, string>,
): Promise<void> {
  checkLittleEndian();
  const entries = [...tensors];
  const arrays = await Promise.all(entries.map(([, t]) => t.data()));
  // Widest elements first (a stable sort keeps the caller's order within each width).
  const layout = entries.map((_, i) => i).sort((a, b) => BYTES_PER_ELEMENT[entries[b]![1].dtype] - BYTES_PER_ELEMENT[entries[a]![1].dtype]);
  const offsets = new Map<number, [number, number]>();
  let end = 0;
  for (const i of layout) {
    const bytes = arrays[i]!.byteLength;
    offsets.set(i, [end, end + bytes]);
    end += bytes;
  }
  const header = new Map<string, HeaderEntry | Record<string, string>>();
  if (metadata) header.set('__metadata__', metadata);
  entries.forEach(([name, t], i) => {
    if (header.has(name)) {
      throw new Error(`saveSafetensors: the name "${name}" is ${name === '__metadata__' ? 'reserved' : 'given twice'}.`);
    }
    header.set(name, { dtype: FILE_DTYPE[t.dtype], shape: [...t.shape], data_offsets: offsets.get(i)! });
  });
  let json = JSON.stringify(Object.fromEntries(header));
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(headerBytes.length));
  await writeFileAtomic(path, [length, headerBytes, ...layout.map((i) => bytesOf(arrays[i]!))]);
}

/**
 * Loads every tensor of a safetensors file onto the active backend, with the file's metadata.
 * A truncated file or a malformed header is refused with one sentence naming the file.
 */
export async function loadSafetensors(path: string): Promise<{ tensors: Map<string, Tensor>; metadata: Record<string, string> }> {
  checkLittleEndian();
  const file = await readFile(path);
  const refuse = (reason: string): Error => new Error(`Cannot load ${path}: ${reason}.`);
  if (file.length < 8) throw refuse(`the file is truncated (${file.length} bytes, fewer than the 8-byte header length)`);
  const headerLength = Number(file.readBigUInt64LE(0));
  if (8 + headerLength > file.length) {
    throw refuse(`the file is truncated (the header says it is ${headerLength} bytes, but only ${file.length - 8} follow)`);
  }
  let header: unknown;
  try {
    header = JSON.parse(file.toString('utf8', 8, 8 + headerLength));
  } catch {
    throw refuse('the header is not valid JSON, so this is not a safetensors file or it is corrupt');
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) throw refuse('the header is not a JSON object');
  const data = file.subarray(8 + headerLength);

  let metadata: Record<string, string> = {};
  const tensors = new Map<string, Tensor>();
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (!isStringRecord(entry)) throw refuse('the header\'s "__metadata__" is not an object of strings');
      metadata = entry;
      continue;
    }
    const { dtype, shape, begin, end } = checkEntry(name, entry, refuse);
    if (end > data.length) {
      throw refuse(`the file is truncated (tensor "${name}" ends at data byte ${end}, but the data section has ${data.length} bytes)`);
    }
    tensors.set(name, tensor(arrayFrom(data.subarray(begin, end), dtype), shape, { dtype }));
  }
  return { tensors, metadata };
}

const isStringRecord = (x: unknown): x is Record<string, string> =>
  x !== null && typeof x === 'object' && !Array.isArray(x) && Object.values(x).every((v) => typeof v === 'string');

/** One header entry, checked: a known dtype, a shape of non-negative integers, and offsets spanning exactly its bytes. */
function checkEntry(
  name: string,
  entry: unknown,
  refuse: (reason: string) => Error,
): { dtype: DType; shape: number[]; begin: number; end: number } {
  const e = entry as Partial<HeaderEntry> | null;
  const isCount = (d: unknown): d is number => Number.isInteger(d) && (d as number) >= 0;
  if (e === null || typeof e !== 'object' || !Array.isArray(e.shape) || !e.shape.every(isCount)) {
    throw refuse(`the header entry for "${name}" has no valid "shape"`);
  }
  const dtype = FROM_FILE_DTYPE.get(String(e.dtype));
  if (!dtype) throw refuse(`tensor "${name}" has dtype ${String(e.dtype)}, which tensorscan cannot hold (it reads F32, F16, I32 and F64)`);
  const offsets = e.data_offsets;
  const bytes = sizeOf(e.shape) * BYTES_PER_ELEMENT[dtype];
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[1] - offsets[0] !== bytes) {
    throw refuse(
      `the "data_offsets" of tensor "${name}" do not span the ${bytes} bytes of a ${e.dtype} tensor of shape ${shapeToString(e.shape)}`,
    );
  }
  return { dtype, shape: e.shape, begin: offsets[0], end: offsets[1] };
}
