/**
 * Learning-rate schedules: linear warm-up, then cosine decay.
 *
 * Warm-up: Adam's second-moment estimate v is built from only a few gradients at the start, so its
 * step sizes are unreliable; ramping the learning rate up from ~0 over the first steps keeps those
 * early, noisy steps small. Cosine decay then lowers the rate smoothly so the last steps refine rather
 * than jump around the minimum.
 *
 *     lr(s) = peak · (s + 1) / warmup                                   for s < warmup
 *     lr(s) = min + (peak − min) · ½ (1 + cos(π · (s − warmup) / (total − warmup)))   for warmup ≤ s < total
 *     lr(s) = min                                                       for s ≥ total
 *
 * `s` counts optimizer steps from 0, so the first step already has a non-zero rate (peak / warmup),
 * the step s = warmup − 1 reaches the peak, and the rate reaches `min` after the last step.
 */

export interface ScheduleOptions {
  /** The largest learning rate, reached at the end of warm-up. */
  peakLr: number;
  /** Steps of linear warm-up (0 for none). */
  warmupSteps: number;
  /** Total optimizer steps of the run; decay ends here. */
  totalSteps: number;
  /** The rate decay ends at (default 0). */
  minLr?: number;
  /** 'cosine' (default) decays after warm-up; 'constant' holds the peak after warm-up. */
  decay?: 'cosine' | 'constant';
}

/** A function from step (0-based) to learning rate; see the formula above. */
export type Schedule = (step: number) => number;

export function warmupCosine(options: ScheduleOptions): Schedule {
  const { peakLr, warmupSteps, totalSteps, minLr = 0, decay = 'cosine' } = options;
  return (step: number): number => {
    if (step < warmupSteps) return (peakLr * (step + 1)) / warmupSteps;
    if (decay === 'constant') return peakLr;
    if (step >= totalSteps) return minLr;
    const progress = (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps);
    return minLr + (peakLr - minLr) * 0.5 * (1 + Math.cos(Math.PI * progress));
  };
}
