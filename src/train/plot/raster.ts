/**
 * An RGB pixel canvas with the few drawing primitives a chart needs: filled rectangles, lines of a
 * given thickness, and text in the built-in bitmap font (horizontal or rotated to read upwards).
 * Coordinates are pixels, x to the right and y downwards from the top-left corner; anything drawn
 * outside the canvas is clipped.
 */
import { GLYPH_WIDTH, glyphPixels } from './bitmap-font.js';
import { encodePng } from './png.js';

/** A colour as [red, green, blue], each 0–255. */
export type Rgb = readonly [number, number, number];

export interface TextOptions {
  /** Each font pixel becomes a scale×scale block (default 1). */
  scale?: number;
  /** Rotate 90° anticlockwise, so the text reads bottom to top (for a y-axis label). */
  vertical?: boolean;
}

export class Raster {
  readonly pixels: Uint8Array;

  constructor(
    readonly width: number,
    readonly height: number,
    background: Rgb = [255, 255, 255],
  ) {
    this.pixels = new Uint8Array(width * height * 3);
    this.fillRect(0, 0, width, height, background);
  }

  setPixel(x: number, y: number, color: Rgb): void {
    const px = Math.round(x);
    const py = Math.round(y);
    if (px < 0 || py < 0 || px >= this.width || py >= this.height) return;
    this.pixels.set(color, (py * this.width + px) * 3);
  }

  /** Fills the w×h rectangle whose top-left corner is (x, y). */
  fillRect(x: number, y: number, w: number, h: number, color: Rgb): void {
    for (let j = Math.max(0, Math.round(y)); j < Math.min(this.height, Math.round(y + h)); j++) {
      for (let i = Math.max(0, Math.round(x)); i < Math.min(this.width, Math.round(x + w)); i++) this.setPixel(i, j, color);
    }
  }

  /**
   * A straight line from (x0, y0) to (x1, y1), `thickness` pixels wide: Bresenham-style stepping along
   * the longer axis, stamping a thickness×thickness square at each step.
   */
  line(x0: number, y0: number, x1: number, y1: number, color: Rgb, thickness = 1): void {
    const steps = Math.max(1, Math.ceil(Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0))));
    const half = (thickness - 1) / 2;
    for (let s = 0; s <= steps; s++) {
      const x = x0 + ((x1 - x0) * s) / steps;
      const y = y0 + ((y1 - y0) * s) / steps;
      this.fillRect(Math.round(x - half), Math.round(y - half), thickness, thickness, color);
    }
  }

  /** Pixel width of `text` at `scale` (its height is GLYPH_HEIGHT·scale). */
  static textWidth(text: string, scale = 1): number {
    return Math.max(0, text.length * (GLYPH_WIDTH + 1) - 1) * scale;
  }

  /** Draws `text` with its top-left corner at (x, y); vertical text has its bottom-left corner there. */
  text(text: string, x: number, y: number, color: Rgb, options: TextOptions = {}): void {
    const { scale = 1, vertical = false } = options;
    [...text].forEach((char, k) => {
      const advance = k * (GLYPH_WIDTH + 1) * scale;
      for (const [gx, gy] of glyphPixels(char)) {
        const along = advance + gx * scale;
        const across = gy * scale;
        if (vertical) this.fillRect(x + across, y - along - scale, scale, scale, color);
        else this.fillRect(x + along, y + across, scale, scale, color);
      }
    });
  }

  /** The canvas as a PNG file. */
  toPng(): Buffer {
    return encodePng(this.width, this.height, this.pixels);
  }
}
