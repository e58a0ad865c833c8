/**
 * The growth exponent of a measured curve: if time ∝ L^k, then log t = k·log L + c, a straight line on
 * log-log axes whose slope is k. Least squares on the logs gives k: about 1 for work linear in the
 * sequence length (the scan), about 2 for quadratic work (attention's L × L scores).
 *
 * Short sequences hide the exponent — fixed costs (launch overhead, the vocabulary head) dominate —
 * so the scaling suite fits only its long lengths (1k–16k by default).
 */

export interface PowerLawFit {
  /** The exponent k of t ∝ L^k. */
  k: number;
  /** The lengths the fit used. */
  lengths: number[];
}

/** Least-squares slope of log y on log x; null with fewer than two points (or all at one x). */
export function fitPowerLaw(points: readonly { x: number; y: number }[]): PowerLawFit | null {
  const usable = points.filter((p) => p.x > 0 && p.y > 0 && Number.isFinite(p.y));
  if (usable.length < 2) return null;
  const lx = usable.map((p) => Math.log(p.x));
  const ly = usable.map((p) => Math.log(p.y));
  const mx = lx.reduce((a, b) => a + b, 0) / lx.length;
  const my = ly.reduce((a, b) => a + b, 0) / ly.length;
  let sxy = 0;
  let sxx = 0;
  lx.forEach((x, i) => {
    sxy += (x - mx) * ((ly[i] as number) - my);
    sxx += (x - mx) ** 2;
  });
  if (sxx === 0) return null;
  return { k: sxy / sxx, lengths: usable.map((p) => p.x) };
}
