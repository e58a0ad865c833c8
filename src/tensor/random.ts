/**
 * Reproducible randomness, the same on every backend.
 *
 * Random tensors come from a *counter-based* generator: element i of a draw is a pure function of
 * (seed, i), so a GPU thread can compute its own element without any shared state, and the CPU and
 * GPU produce the same numbers. The function is the PCG hash of Jarzynski & Olano, "Hash Functions
 * for GPU Rendering" (JCGT 2020), a one-round PCG permutation that passes most of TestU01's SmallCrush
 * and is cheap in 32-bit integer arithmetic (WGSL has no 64-bit integers):
 *
 *     pcg(x) = let s = x·747796405 + 2891336453,  w = ((s >> ((s >> 28) + 4)) ^ s)·277803737
 *              in (w >> 22) ^ w                                  (all arithmetic mod 2³²)
 *
 * A draw with seed `seed` uses key k = pcg(seed) and
 * - uniform element i:  u_i = (pcg(i + k) >> 8) · 2⁻²⁴ ∈ [0, 1)
 * - normal element i:   Box–Muller on u1 = ((pcg(2i + k) >> 8) + 1)·2⁻²⁴ ∈ (0, 1] and
 *                       u2 = (pcg(2i + 1 + k) >> 8)·2⁻²⁴:  z_i = √(−2 ln u1) · cos(2π u2)
 *
 * Each random op takes a fresh seed from the global `Generator`, whose whole state is two integers,
 * so a training checkpoint can store and restore it exactly.
 */

/** The PCG hash: a bijection on 32-bit unsigned integers. */
export function pcgHash(x: number): number {
  const s = (Math.imul(x >>> 0, 747796405) + 2891336453) >>> 0;
  const w = Math.imul(((s >>> ((s >>> 28) + 4)) ^ s) >>> 0, 277803737) >>> 0;
  return ((w >>> 22) ^ w) >>> 0;
}

const TWO_POW_MINUS_24 = 1 / 16777216;

/** Uniform element i of the draw with key k (k = pcgHash(seed)). */
export const uniformAt = (k: number, i: number): number => (pcgHash((i + k) >>> 0) >>> 8) * TWO_POW_MINUS_24;

/** Standard-normal element i of the draw with key k, by Box–Muller. */
export function normalAt(k: number, i: number): number {
  const u1 = ((pcgHash((2 * i + k) >>> 0) >>> 8) + 1) * TWO_POW_MINUS_24;
  const u2 = (pcgHash((2 * i + 1 + k) >>> 0) >>> 8) * TWO_POW_MINUS_24;
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}

/** Serialisable generator state: the user's seed and how many draws have been taken. */
export interface GeneratorState {
  seed: number;
  counter: number;
}

/** Hands out one fresh 32-bit seed per random op, deterministically from (seed, counter). */
export class Generator {
  constructor(
    public seed = 0,
    public counter = 0,
  ) {}

  nextSeed(): number {
    return pcgHash((pcgHash(this.seed >>> 0) + this.counter++) >>> 0);
  }

  state(): GeneratorState {
    return { seed: this.seed, counter: this.counter };
  }

  restore(state: GeneratorState): void {
    this.seed = state.seed;
    this.counter = state.counter;
  }
}

/** The global generator that random ops draw from. */
export const globalGenerator = new Generator();

/** Seeds the global generator: the same seed gives the same random tensors on every backend. */
export function manualSeed(seed: number): void {
  globalGenerator.restore({ seed, counter: 0 });
}
