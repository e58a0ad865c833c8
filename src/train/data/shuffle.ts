/**
 * Seeded shuffling: a small 32-bit PRNG and the Fisher–Yates permutation built on it.
 * Everything is a pure function of integer seeds, so a data order can be rebuilt
 * from a saved seed instead of saving the order itself.
 */

/**
 * mulberry32 (Tommy Ettinger): a generator of floats in [0, 1) with 32 bits of state
 * and a period of 2^32, far more draws than shuffling ~20k windows needs. Chosen
 * because it is a few lines of 32-bit integer math (Math.imul, >>>) that gives the
 * same sequence on every JavaScript engine, unlike Math.random, which cannot be seeded.
 */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * MurmurHash3's 32-bit finalizer: a bijection on uint32 that flips about half the
 * output bits per input bit. Used to turn nearby seeds (seed, seed + 1, …) into
 * unrelated generator states.
 */
function fmix32(x: number): number {
  let h = x >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * A uniformly shuffled permutation of 0..n-1 (Fisher–Yates), fixed by `(seed, stream)`.
 * `stream` picks one of many independent orders for the same seed (e.g. the epoch
 * number), so order k can be rebuilt without replaying orders 0..k-1.
 */
export function seededPermutation(n: number, seed: number, stream: number): Uint32Array {
  const random = mulberry32(fmix32(seed ^ fmix32(stream)));
  const perm = new Uint32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const tmp = perm[i];
    perm[i] = perm[j];
    perm[j] = tmp;
  }
  return perm;
}
