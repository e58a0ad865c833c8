/**
 * The selective scan's recurrence as a work-efficient parallel prefix scan (Blelloch 1990, "Prefix
 * Sums and Their Applications"), run sequentially here so that every step can be printed and checked.
 * It is the algorithm the WebGPU kernel runs inside a workgroup (docs/selective-scan.md); on the CPU
 * the plain loop in `selective-scan.ts` is faster and stays the definition.
 *
 * One chain of the scan, for a fixed (batch, channel, state n), is
 *
 *     h_t = a_t·h_{t−1} + b_t,   h_{−1} = 0,   with a_t = exp(Δ_t·A[n]), b_t = Δ_t·B_t[n]·u_t.
 *
 * Step t is the affine map x_t = (a_t, b_t): h ↦ a_t·h + b_t. Doing x_1 and then x_2 is again affine,
 *
 *     (a_1, b_1) ∘ (a_2, b_2) = (a_1·a_2, a_2·b_1 + b_2)          ("x_1, then x_2")
 *
 * and h_t is the b of x_0 ∘ x_1 ∘ … ∘ x_t applied to h_{−1} = 0. The operator is associative because
 * it is composition of functions; by hand,
 *
 *     (x_1 ∘ x_2) ∘ x_3 = (a_1a_2a_3, a_3(a_2b_1 + b_2) + b_3) = (a_1a_2a_3, a_2a_3b_1 + a_3b_2 + b_3)
 *     x_1 ∘ (x_2 ∘ x_3) = (a_1a_2a_3, a_2a_3·b_1 + (a_3b_2 + b_3))                       — the same,
 *
 * so the product of a whole sequence may be bracketed any way we like — in particular as a balanced
 * tree, whose levels are each a batch of independent combines. It is not commutative (x_1 ∘ x_2 ≠
 * x_2 ∘ x_1: time has a direction), so every combine below keeps the earlier element on the left.
 * The identity is e = (1, 0), the map h ↦ h; it pads the sequence to a power of two.
 */

/** The scan of one chain: the states h_t and how many times two elements were combined. */
export interface BlellochResult {
  h: Float64Array;
  combines: number;
}

/** The states h_0 … h_{len−1} of h_t = a_t·h_{t−1} + b_t from h_{−1} = 0, by up-sweep and down-sweep. */
export function blellochScan(a: ArrayLike<number>, b: ArrayLike<number>): BlellochResult {
  const len = a.length;
  let size = 1;
  while (size < len) size *= 2;
  // The tree lives in place in two arrays: element i is the pair (xa[i], xb[i]). Padding is e = (1, 0).
  const xa = new Float64Array(size).fill(1);
  const xb = new Float64Array(size);
  xa.set(a);
  xb.set(b);
  let combines = 0;
  /** Element k ← (a1, b1) ∘ (a2, b2). */
  const setCombined = (k: number, a1: number, b1: number, a2: number, b2: number): void => {
    xa[k] = a1 * a2;
    xb[k] = a2 * b1 + b2;
    combines++;
  };

  // Up-sweep (reduce): build the tree of partial products bottom-up. Writing x_{i:j} for
  // x_i ∘ … ∘ x_j, with size 8:
  //
  //   index:   0     1     2     3     4     5     6     7
  //   start:  x0    x1    x2    x3    x4    x5    x6    x7
  //            └──∘──┘     └──∘──┘     └──∘──┘     └──∘──┘        step 1: i = 1, 3, 5, 7
  //   →       x0   x0:1   x2   x2:3   x4   x4:5   x6   x6:7
  //                  └────────∘──┘           └────────∘──┘        step 2: i = 3, 7
  //   →       x0   x0:1   x2   x0:3   x4   x4:5   x6   x4:7
  //                              └────────────────────∘──┘        step 4: i = 7
  //   →       x0   x0:1   x2   x0:3   x4   x4:5   x6   x0:7
  //
  // At step s the element i (every 2s-th, from 2s − 1) becomes x[i − s] ∘ x[i]: its left neighbour
  // subtree (earlier in time) on the left. size − 1 combines in all: size/2 + size/4 + … + 1.
  for (let step = 1; step < size; step *= 2) {
    for (let i = 2 * step - 1; i < size; i += 2 * step) setCombined(i, xa[i - step], xb[i - step], xa[i], xb[i]);
  }

  // Down-sweep: clear the root to e, then walk the tree top-down. Every node holds the product of
  // everything *before* its subtree (its prefix); a node passes its prefix to its left child, and to
  // its right child its prefix followed by the left child's subtree total (which the up-sweep left in
  // the left child):
  //
  //   clear:  x0   x0:1   x2   x0:3   x4   x4:5   x6    e
  //                              ├────────────────────┤           step 4: (3, 7)
  //   →       x0   x0:1   x2    e     x4   x4:5   x6   x0:3          x[3] ← e,  x[7] ← e ∘ x0:3
  //                  ├───────────┤           ├───────────┤        step 2: (1, 3), (5, 7)
  //   →       x0    e     x2   x0:1   x4   x0:3   x6   x0:5
  //            ├─────┤     ├─────┤     ├─────┤     ├─────┤        step 1: (0, 1), (2, 3), (4, 5), (6, 7)
  //   →        e    x0   x0:1  x0:2  x0:3  x0:4  x0:5  x0:6       the exclusive scan
  //
  // Again size − 1 combines, so the whole scan does about 2·size: O(len) work, like the sequential
  // loop, in 2·log2(size) rounds of independent combines (the Hillis–Steele scan takes log2(size)
  // rounds but size·log2(size) work).
  xa[size - 1] = 1;
  xb[size - 1] = 0;
  for (let step = size / 2; step >= 1; step /= 2) {
    for (let i = 2 * step - 1; i < size; i += 2 * step) {
      const left = i - step;
      const prefixA = xa[i];
      const prefixB = xb[i];
      const leftA = xa[left];
      const leftB = xb[left];
      xa[left] = prefixA;
      xb[left] = prefixB;
      setCombined(i, prefixA, prefixB, leftA, leftB);
    }
  }

  // Exclusive to inclusive. The down-sweep leaves at t the product of the steps strictly before t,
  // x_{0:t−1}, whose b is h_{t−1} (the root was cleared to e, the empty product, and the total x_{0:7}
  // is gone). The state after step t needs step t itself: one more combine per element,
  //
  //     x_{0:t} = x_{0:t−1} ∘ x_t,   whose b is a_t·h_{t−1} + b_t = h_t — the recurrence, once.
  //
  // (On the GPU this is where the state carried in from the previous chunk is folded in as well.)
  const h = new Float64Array(len);
  for (let t = 0; t < len; t++) {
    setCombined(t, xa[t], xb[t], a[t] as number, b[t] as number);
    h[t] = xb[t];
  }
  return { h, combines };
}
