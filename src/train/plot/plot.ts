/**
 * Line charts as PNG files, with no dependencies: axes with "nice" tick values, grid lines, tick labels
 * and titles in the built-in bitmap font, one or more labelled series with a legend, and optional
 * logarithmic axes (for scaling plots, where power laws become straight lines).
 *
 *     const png = renderLineChart([{ label: 'train', x: steps, y: losses }], { xLabel: 'step', yLabel: 'loss' });
 *     await writeLineChart('runs/x/loss.png', series, options);   // atomic: temp file + rename
 */
import { randomBytes } from 'node:crypto';
import { rename, unlink, writeFile } from 'node:fs/promises';
import { GLYPH_HEIGHT } from './bitmap-font.js';
import { Raster, type Rgb } from './raster.js';

export interface Series {
  label: string;
  /** x and y coordinates of the points, in drawing order; non-finite values (or ≤ 0 on a log axis) break the line. */
  x: readonly number[];
  y: readonly number[];
  /** Line colour; by default the next colour of the palette. */
  color?: Rgb;
  /** Draw a square at each point (always done for a series of one point). */
  markers?: boolean;
}

export interface ChartOptions {
  title?: string;
  xLabel?: string;
  yLabel?: string;
  /** Logarithmic x axis (base 10); points with x ≤ 0 are left out. */
  logX?: boolean;
  /** Logarithmic y axis (base 10); points with y ≤ 0 are left out. */
  logY?: boolean;
  /** Image size in pixels (default 960 × 600). */
  width?: number;
  height?: number;
}

/** Distinguishable line colours (the "tableau 10" palette's first six). */
const PALETTE: readonly Rgb[] = [
  [31, 119, 180],
  [255, 127, 14],
  [44, 160, 44],
  [214, 39, 40],
  [148, 103, 189],
  [140, 86, 75],
];
const INK: Rgb = [40, 40, 40];
const GRID: Rgb = [225, 225, 225];
/** Font scale of all text: 2 makes the 5×8 glyphs 10×16 pixels. */
const FONT = 2;
const TEXT_H = GLYPH_HEIGHT * FONT;

/** One axis: the data range mapped onto pixels, in linear or log10 units, with its tick values. */
interface Axis {
  log: boolean;
  /** Range in axis units (log10 of the value on a log axis). */
  lo: number;
  hi: number;
  /** Tick positions as data values. */
  ticks: number[];
}

/** A step of 1, 2 or 5 times a power of ten that cuts `span` into about `count` pieces. */
function niceStep(span: number, count: number): number {
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const fraction = raw / power;
  return (fraction < 1.5 ? 1 : fraction < 3.5 ? 2 : fraction < 7.5 ? 5 : 10) * power;
}

/** An axis covering `values`: widened to whole tick steps when linear, padded by 5% when logarithmic. */
function makeAxis(values: number[], log: boolean): Axis {
  if (values.length === 0) return log ? { log, lo: 0, hi: 1, ticks: [1, 10] } : { log, lo: 0, hi: 1, ticks: [0, 0.5, 1] };
  let min = Math.min(...values);
  let max = Math.max(...values);
  if (log) {
    // The data range in decades, padded by 5%. Ticks: within one decade, linear "nice" values; over a
    // few decades 1, 2, 5 × 10ᵉ; over many, whole decades thinned to about 8 labels.
    const span = Math.log10(max) - Math.log10(min);
    const pad = span > 0 ? span * 0.05 : 0.1;
    const lo = Math.log10(min) - pad;
    const hi = Math.log10(max) + pad;
    const inRange = (v: number): boolean => v > 0 && Math.log10(v) >= lo && Math.log10(v) <= hi;
    const ticks: number[] = [];
    if (hi - lo < 1) {
      const step = niceStep(10 ** hi - 10 ** lo, 5);
      for (let v = Math.ceil(10 ** lo / step) * step; v <= 10 ** hi; v += step) ticks.push(Number(v.toPrecision(12)));
    } else {
      const mantissas = hi - lo <= 3 ? [1, 2, 5] : [1];
      const every = Math.ceil((hi - lo) / 8);
      for (let e = Math.floor(lo); e <= Math.ceil(hi); e += every) {
        for (const m of mantissas) if (inRange(m * 10 ** e)) ticks.push(Number((m * 10 ** e).toPrecision(12)));
      }
    }
    return { log, lo, hi, ticks };
  }
  if (min === max) {
    const pad = min === 0 ? 1 : Math.abs(min) * 0.1;
    min -= pad;
    max += pad;
  }
  const step = niceStep(max - min, 5);
  const lo = Math.floor(min / step) * step;
  const hi = Math.ceil(max / step) * step;
  const ticks: number[] = [];
  for (let k = 0; lo + k * step <= hi + step * 1e-9; k++) ticks.push(Number((lo + k * step).toPrecision(12)));
  return { log, lo, hi, ticks };
}

/** Axis units of a data value. */
const toAxis = (axis: Axis, v: number): number => (axis.log ? Math.log10(v) : v);

/** A short label for a tick value: "0.05", "1200", "1e6", "3e-5". */
export function formatTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) {
    const [mantissa, exponent] = v.toExponential().split('e') as [string, string];
    return `${Number(Number(mantissa).toPrecision(3))}e${Number(exponent)}`;
  }
  return String(Number(v.toPrecision(4)));
}

/** Whether a point can be drawn on these axes. */
const drawable = (x: number, y: number, logX: boolean, logY: boolean): boolean =>
  Number.isFinite(x) && Number.isFinite(y) && (!logX || x > 0) && (!logY || y > 0);

/** Renders the chart and returns it as a PNG file's bytes. */
export function renderLineChart(series: readonly Series[], options: ChartOptions = {}): Buffer {
  const { width = 960, height = 600, logX = false, logY = false } = options;
  const xs: number[] = [];
  const ys: number[] = [];
  for (const s of series) {
    s.x.forEach((x, i) => {
      const y = s.y[i] as number;
      if (drawable(x, y, logX, logY)) {
        xs.push(x);
        ys.push(y);
      }
    });
  }
  const xAxis = makeAxis(xs, logX);
  const yAxis = makeAxis(ys, logY);

  // Margins leave room for the title, tick labels and axis labels.
  const yTickWidth = Math.max(...yAxis.ticks.map((t) => Raster.textWidth(formatTick(t), FONT)));
  const left = 16 + (options.yLabel ? TEXT_H + 12 : 0) + yTickWidth + 10;
  const top = options.title ? TEXT_H + 24 : 16;
  const bottom = TEXT_H + 16 + (options.xLabel ? TEXT_H + 12 : 0);
  const right = 24;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const px = (x: number): number => left + ((toAxis(xAxis, x) - xAxis.lo) / (xAxis.hi - xAxis.lo)) * plotW;
  const py = (y: number): number => top + plotH - ((toAxis(yAxis, y) - yAxis.lo) / (yAxis.hi - yAxis.lo)) * plotH;

  const img = new Raster(width, height);
  // Grid lines and tick labels.
  for (const t of xAxis.ticks) {
    const x = Math.round(px(t));
    img.line(x, top, x, top + plotH, GRID);
    const label = formatTick(t);
    img.text(label, x - Raster.textWidth(label, FONT) / 2, top + plotH + 8, INK, { scale: FONT });
  }
  for (const t of yAxis.ticks) {
    const y = Math.round(py(t));
    img.line(left, y, left + plotW, y, GRID);
    const label = formatTick(t);
    img.text(label, left - 8 - Raster.textWidth(label, FONT), y - TEXT_H / 2, INK, { scale: FONT });
  }
  // The frame.
  img.line(left, top, left + plotW, top, INK);
  img.line(left, top + plotH, left + plotW, top + plotH, INK);
  img.line(left, top, left, top + plotH, INK);
  img.line(left + plotW, top, left + plotW, top + plotH, INK);

  // The series: segments between consecutive drawable points, kept in pixels for the legend's placement.
  const colors = series.map((s, i) => s.color ?? (PALETTE[i % PALETTE.length] as Rgb));
  const drawn: [number, number][] = [];
  series.forEach((s, k) => {
    const color = colors[k] as Rgb;
    let previous: [number, number] | null = null;
    const points = s.x.length;
    for (let i = 0; i < points; i++) {
      const x = s.x[i] as number;
      const y = s.y[i] as number;
      if (!drawable(x, y, logX, logY)) {
        previous = null;
        continue;
      }
      const point: [number, number] = [px(x), py(y)];
      if (previous) {
        img.line(previous[0], previous[1], point[0], point[1], color, 2);
        for (let f = 0.25; f < 1; f += 0.25)
          drawn.push([previous[0] + f * (point[0] - previous[0]), previous[1] + f * (point[1] - previous[1])]);
      }
      if (s.markers || points === 1) img.fillRect(point[0] - 3, point[1] - 3, 7, 7, color);
      drawn.push(point);
      previous = point;
    }
  });

  // The legend, in whichever corner of the plot hides the fewest points of the curves (top right when
  // several tie): a growth curve ends top right, where a fixed legend would cover its last points.
  if (series.length > 0) {
    const labelWidth = Math.max(...series.map((s) => Raster.textWidth(s.label, FONT)));
    const boxW = labelWidth + 52;
    const boxH = series.length * (TEXT_H + 8) + 8;
    const corners: [number, number][] = [
      [left + plotW - boxW - 10, top + 10],
      [left + 10, top + 10],
      [left + plotW - boxW - 10, top + plotH - boxH - 10],
      [left + 10, top + plotH - boxH - 10],
    ];
    const hidden = ([cx, cy]: [number, number]): number =>
      drawn.filter(([x, y]) => x >= cx - 4 && x <= cx + boxW + 4 && y >= cy - 4 && y <= cy + boxH + 4).length;
    const [bx, by] = corners.reduce((best, c) => (hidden(c) < hidden(best) ? c : best));
    img.fillRect(bx, by, boxW, boxH, [255, 255, 255]);
    img.line(bx, by, bx + boxW, by, GRID);
    img.line(bx, by + boxH, bx + boxW, by + boxH, GRID);
    img.line(bx, by, bx, by + boxH, GRID);
    img.line(bx + boxW, by, bx + boxW, by + boxH, GRID);
    series.forEach((s, k) => {
      const y = by + 8 + k * (TEXT_H + 8);
      img.line(bx + 8, y + TEXT_H / 2, bx + 36, y + TEXT_H / 2, colors[k] as Rgb, 3);
      img.text(s.label, bx + 44, y, INK, { scale: FONT });
    });
  }

  // Titles.
  if (options.title) img.text(options.title, left + (plotW - Raster.textWidth(options.title, FONT)) / 2, 12, INK, { scale: FONT });
  if (options.xLabel) {
    img.text(options.xLabel, left + (plotW - Raster.textWidth(options.xLabel, FONT)) / 2, height - TEXT_H - 10, INK, { scale: FONT });
  }
  if (options.yLabel) {
    img.text(options.yLabel, 14, top + (plotH + Raster.textWidth(options.yLabel, FONT)) / 2, INK, { scale: FONT, vertical: true });
  }
  return img.toPng();
}

/** Renders the chart and writes it to `path` atomically (a temp file renamed into place). */
export async function writeLineChart(path: string, series: readonly Series[], options: ChartOptions = {}): Promise<void> {
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, renderLineChart(series, options));
    await rename(tmp, path);
  } catch (error) {
    await unlink(tmp).catch(() => {});
    throw error;
  }
}
