/**
 * Whether new operations are recorded for backward. Inside `noGrad` (and while backward itself runs),
 * results carry no graph, so nothing is kept alive for a backward pass that will never come.
 */
let enabled = true;

export const isGradEnabled = (): boolean => enabled;

/** Runs `fn` without recording operations for autograd. */
export function noGrad<T>(fn: () => T): T {
  const previous = enabled;
  enabled = false;
  try {
    return fn();
  } finally {
    enabled = previous;
  }
}
