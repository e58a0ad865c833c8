/**
 * A minimal PNG encoder: 8-bit RGB, no interlacing — what a chart needs and nothing more.
 *
 * A PNG file is an 8-byte signature followed by chunks, each
 *     length (4 bytes, big-endian) · type (4 ASCII letters) · data · CRC-32 of type and data.
 * Three chunks suffice:
 * - IHDR: width, height, bit depth 8, colour type 2 (RGB), compression 0, filter 0, interlace 0;
 * - IDAT: the zlib-compressed image, scanline by scanline, each scanline preceded by its filter byte
 *   (0 = "None": the bytes are stored as they are; flat-coloured charts compress well even so);
 * - IEND: empty, marks the end.
 * The zlib stream (deflate plus header and Adler-32) is what node:zlib's deflateSync produces.
 */
import { deflateSync } from 'node:zlib';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** CRC-32 (polynomial 0xEDB88320, reflected) lookup table: the CRC of each possible byte. */
const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** The CRC-32 of `bytes`, as used by PNG, zip and gzip (crc32("123456789") = 0xCBF43926). */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = (CRC_TABLE[(c ^ (bytes[i] as number)) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** One chunk: length, type, data, CRC of type + data. */
function chunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  out.set(data, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/** Encodes an RGB image: `rgb` holds width·height·3 bytes, row-major from the top-left pixel. */
export function encodePng(width: number, height: number, rgb: Uint8Array): Buffer {
  if (rgb.length !== width * height * 3) {
    throw new Error(`encodePng: ${rgb.length} bytes do not make a ${width}×${height} RGB image.`);
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8); // bit depth, colour type RGB, compression, filter, interlace
  const rowBytes = width * 3;
  const raw = Buffer.alloc(height * (rowBytes + 1)); // each row: filter byte 0, then its pixels
  for (let y = 0; y < height; y++) raw.set(rgb.subarray(y * rowBytes, (y + 1) * rowBytes), y * (rowBytes + 1) + 1);
  return Buffer.concat([SIGNATURE, chunk('IHDR', header), chunk('IDAT', deflateSync(raw)), chunk('IEND', new Uint8Array(0))]);
}
