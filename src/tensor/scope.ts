/**
 * Memory scopes: the rule for freeing tensors.
 *
 * GPU memory is not garbage-collected by JavaScript, so tensors are freed explicitly:
 * - `t.dispose()` frees one tensor now (its buffer returns when no view of it is left);
 * - `tidy(fn)` frees every tensor created while `fn` runs, except those it returns (which move to the
 *   enclosing scope) and those marked with `keep(t)`.
 * Parameter gradients (`p.grad`) are kept automatically, so a whole training step can run inside
 * `tidy`. A tensor created outside any scope lives until disposed.
 */
import type { Tensor } from './tensor.js';

const scopes: Set<Tensor>[] = [];

/** Called by every new tensor: remember it in the innermost scope. */
export function track(t: Tensor): void {
  scopes[scopes.length - 1]?.add(t);
}

/** Exempts `t` from disposal by the scopes it was created in. */
export function keep<T extends Tensor>(t: T): T {
  for (const scope of scopes) scope.delete(t);
  return t;
}

/** Collects the tensors inside a result: a tensor, or arrays/objects of them. */
function collect(result: unknown, into: Set<Tensor>): void {
  if (result === null || typeof result !== 'object') return;
  if ('dispose' in result && 'shape' in result) into.add(result as Tensor);
  else if (Array.isArray(result)) for (const r of result) collect(r, into);
  else if (Object.getPrototypeOf(result) === Object.prototype) for (const r of Object.values(result)) collect(r, into);
}

/** Runs `fn` and disposes every tensor it created that it does not return. */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (error) {
    for (const t of scope) t.dispose();
    throw error;
  } finally {
    scopes.pop();
  }
  if (result instanceof Promise) throw new Error('tidy: the function must be synchronous (it returned a Promise).');
  const returned = new Set<Tensor>();
  collect(result, returned);
  for (const t of scope) {
    if (returned.has(t)) track(t);
    else t.dispose();
  }
  return result;
}
