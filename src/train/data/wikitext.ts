/**
 * WikiText-2 splits, loaded from the gzipped files in `data/wikitext-2/` and
 * checked against the SHA-256 hashes in `data/wikitext-2/SOURCE.md`.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { tokenizeWithCache } from './tokenize.js';

/** The three WikiText-2 splits. */
export type WikiTextSplit = 'train' | 'valid' | 'test';

/** Where the repository keeps the WikiText-2 files, wherever the process was started from. */
export const WIKITEXT2_DIR = fileURLToPath(new URL('../../../data/wikitext-2/', import.meta.url));

/**
 * SHA-256 (hex) of each split's *uncompressed* text, copied from SOURCE.md.
 * Hashing the text rather than the .gz file means re-compressing the files
 * with other gzip settings does not break the check.
 */
export const WIKITEXT2_SHA256: Readonly<Record<WikiTextSplit, string>> = {
  train: '9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f',
  valid: 'f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8',
  test: 'd790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0',
};

/**
 * Reads one split as text: gunzips `dir/wiki.<split>.tokens.gz`, checks that the
 * SHA-256 of the uncompressed bytes matches {@link WIKITEXT2_SHA256}, and decodes it as UTF-8.
 * The train split is 10.8 MB of text (36,718 lines); valid and test are about 1.1 MB each.
 * Throws if the file is missing, is not valid gzip, or has the wrong hash.
 */
export function loadSplitText(dir: string, split: WikiTextSplit): string {
  const path = join(dir, `wiki.${split}.tokens.gz`);
  const howToFix = `restore it from the repository (git checkout -- ${path}) or see data/wikitext-2/SOURCE.md`;
  if (!existsSync(path)) {
    throw new Error(`WikiText-2 file ${path} is missing: ${howToFix}.`);
  }
  let bytes: Buffer;
  try {
    bytes = gunzipSync(readFileSync(path));
  } catch (err) {
    throw new Error(`WikiText-2 file ${path} is not valid gzip (${(err as Error).message}): ${howToFix}.`);
  }
  const actual = createHash('sha256').update(bytes).digest('hex');
  const expected = WIKITEXT2_SHA256[split];
  if (actual !== expected) {
    throw new Error(`WikiText-2 file ${path} is corrupt (its text has SHA-256 ${actual}, expected ${expected}): ${howToFix}.`);
  }
  return bytes.toString('utf8');
}

/**
 * Reads one split and returns its GPT-2 token ids (length = token count, e.g. 2,448,382 for train),
 * tokenizing on the first call and reading the token cache in `cacheDir` after that.
 */
export function loadSplitTokens(dir: string, split: WikiTextSplit, cacheDir?: string): Int32Array {
  return tokenizeWithCache(loadSplitText(dir, split), cacheDir).ids;
}
