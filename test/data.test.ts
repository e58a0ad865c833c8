import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { decode, encode } from 'gpt-tokenizer/encoding/r50k_base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BatcherState, sequentialBatches, TokenBatcher, windowCount } from '../src/train/data/batches.js';
import { seededPermutation } from '../src/train/data/shuffle.js';
import { tokenize, tokenizeWithCache } from '../src/train/data/tokenize.js';
import { loadSplitText, WIKITEXT2_DIR } from '../src/train/data/wikitext.js';

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'tensorscan-data-'));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

/** A fresh empty directory under the test's temp dir. */
function freshDir(name: string): string {
  return mkdtempSync(join(tmp, `${name}-`));
}

describe('WikiText-2 files', () => {
  it('loads the valid split and its hash matches', () => {
    const text = loadSplitText(WIKITEXT2_DIR, 'valid');
    expect(Buffer.byteLength(text, 'utf8')).toBe(1_121_681);
    expect(text.split('\n').length - 1).toBe(3_760);
    expect(text.startsWith(' \n = Homarus gammarus = \n')).toBe(true);
  });

  it('rejects a copy whose text was changed', () => {
    const dir = freshDir('corrupt');
    const changed = loadSplitText(WIKITEXT2_DIR, 'valid').replace('Homarus', 'Homarux');
    writeFileSync(join(dir, 'wiki.valid.tokens.gz'), gzipSync(changed));
    expect(() => loadSplitText(dir, 'valid')).toThrow(/wiki\.valid\.tokens\.gz is corrupt .*git checkout/);
  });

  it('rejects a file that is not gzip', () => {
    const dir = freshDir('not-gzip');
    writeFileSync(join(dir, 'wiki.test.tokens.gz'), 'plain text, not gzip');
    expect(() => loadSplitText(dir, 'test')).toThrow(/wiki\.test\.tokens\.gz is not valid gzip/);
  });

  it('names the missing file', () => {
    const dir = freshDir('missing');
    expect(() => loadSplitText(dir, 'train')).toThrow(`WikiText-2 file ${join(dir, 'wiki.train.tokens.gz')} is missing:`);
  });
});

describe('GPT-2 tokenization', () => {
  it('matches known GPT-2 ids', () => {
    expect(Array.from(tokenize('Hello world'))).toEqual([15496, 995]);
    // WikiText lines end in " \n": a space token (220) then a newline token (198).
    expect(Array.from(tokenize(' = Valkyria = \n \n'))).toEqual([796, 569, 18354, 7496, 796, 220, 198, 220, 198]);
  });

  it('treats a literal <|endoftext|> in the text as plain characters', () => {
    const text = 'a<|endoftext|>b';
    expect(decode(tokenize(text))).toBe(text);
  });

  it('gives the valid split as 258,659 tokens that decode back to the text', () => {
    const text = loadSplitText(WIKITEXT2_DIR, 'valid');
    const ids = tokenize(text);
    expect(ids.length).toBe(258_659);
    expect(decode(ids)).toBe(text);
  });

  it('gives WikiText lines the same ids as encoding them in one call', () => {
    const lines = loadSplitText(WIKITEXT2_DIR, 'valid')
      .split(/(?<=\n)/)
      .slice(0, 300)
      .join('');
    expect(tokenize(lines)).toEqual(Int32Array.from(encode(lines)));
  });
});

describe('token cache', () => {
  const text = ' = Robert Boulter = \n \n Robert Boulter is an English film , television and theatre actor . \n';

  it('writes on the first call and reads the same ids back on the second', () => {
    const cacheDir = freshDir('cache');
    const first = tokenizeWithCache(text, cacheDir);
    expect(first.fromCache).toBe(false);
    expect(first.ids).toEqual(tokenize(text));
    const second = tokenizeWithCache(text, cacheDir);
    expect(second.fromCache).toBe(true);
    expect(second.cachePath).toBe(first.cachePath);
    expect(second.ids).toEqual(first.ids);
    // Only the final file remains: the temporary file was renamed into place.
    expect(readdirSync(cacheDir)).toEqual([basename(first.cachePath)]);
  });

  it('keys the file by the text', () => {
    const cacheDir = freshDir('cache-key');
    const a = tokenizeWithCache(text, cacheDir);
    const b = tokenizeWithCache(`${text} \n`, cacheDir);
    expect(b.fromCache).toBe(false);
    expect(b.cachePath).not.toBe(a.cachePath);
  });

  it.each([
    ['truncated', (bytes: Buffer) => bytes.subarray(0, bytes.length - 1)],
    ['bad header', (bytes: Buffer) => Buffer.concat([Buffer.from('XXXXXXXX'), bytes.subarray(8)])],
    ['empty', () => Buffer.alloc(0)],
  ])('ignores a %s cache file and rewrites it', (_name, damage) => {
    const cacheDir = freshDir('cache-corrupt');
    const { cachePath, ids } = tokenizeWithCache(text, cacheDir);
    const goodBytes = readFileSync(cachePath);
    writeFileSync(cachePath, damage(goodBytes));
    const rebuilt = tokenizeWithCache(text, cacheDir);
    expect(rebuilt.fromCache).toBe(false);
    expect(rebuilt.ids).toEqual(ids);
    expect(readFileSync(cachePath)).toEqual(goodBytes);
  });

  it('stores 2 bytes per token after a 12-byte header', () => {
    const { cachePath, ids } = tokenizeWithCache(text, freshDir('cache-size'));
    expect(statSync(cachePath).size).toBe(12 + 2 * ids.length);
  });
});

describe('seeded permutation', () => {
  it('is a permutation, fixed by seed and stream', () => {
    const p = seededPermutation(1000, 42, 0);
    expect(Array.from(p).sort((a, b) => a - b)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(seededPermutation(1000, 42, 0)).toEqual(p);
    expect(seededPermutation(1000, 43, 0)).not.toEqual(p);
    expect(seededPermutation(1000, 42, 1)).not.toEqual(p);
  });
});

describe('TokenBatcher', () => {
  // Token i has id i, so every id says where in the stream it came from.
  const seqLen = 4;
  const batchSize = 3;
  const tokens = Int32Array.from({ length: 10 * seqLen + 1 }, (_, i) => i); // exactly 10 windows

  /** Takes `n` batches and returns them. */
  function take(batcher: TokenBatcher, n: number) {
    return Array.from({ length: n }, () => batcher.next());
  }

  it('cuts windows that start every seqLen tokens, with targets shifted by one', () => {
    const batcher = new TokenBatcher(tokens, { batchSize, seqLen, seed: 1 });
    expect(batcher.windowCount).toBe(10);
    expect(batcher.batchesPerEpoch).toBe(3);
    const { inputs, targets } = batcher.next();
    expect(inputs.length).toBe(batchSize * seqLen);
    for (let row = 0; row < batchSize; row++) {
      const start = inputs[row * seqLen];
      expect(start % seqLen).toBe(0);
      for (let t = 0; t < seqLen; t++) {
        expect(inputs[row * seqLen + t]).toBe(start + t);
        expect(targets[row * seqLen + t]).toBe(start + t + 1);
      }
    }
  });

  it('visits distinct windows within an epoch, in a shuffled order, then starts the next epoch', () => {
    const batcher = new TokenBatcher(tokens, { batchSize, seqLen, seed: 7 });
    const epoch0 = take(batcher, 3);
    const windows = epoch0.flatMap((b) => Array.from({ length: batchSize }, (_, r) => b.inputs[r * seqLen] / seqLen));
    expect(new Set(windows).size).toBe(9); // 10 windows, 3 full batches of 3: one is dropped
    expect(windows).not.toEqual([...windows].sort((a, b) => a - b));
    expect(epoch0.map((b) => [b.epoch, b.step])).toEqual([
      [0, 0],
      [0, 1],
      [0, 2],
    ]);
    expect(batcher.state()).toEqual({ epoch: 1, position: 0, seed: 7 });
    const next = batcher.next();
    expect([next.epoch, next.step]).toEqual([1, 3]);
  });

  it('gives the same batches for the same seed and different ones for another', () => {
    const a = take(new TokenBatcher(tokens, { batchSize, seqLen, seed: 5 }), 7);
    const b = take(new TokenBatcher(tokens, { batchSize, seqLen, seed: 5 }), 7);
    const c = take(new TokenBatcher(tokens, { batchSize, seqLen, seed: 6 }), 7);
    expect(b).toEqual(a);
    expect(c.map((x) => x.inputs)).not.toEqual(a.map((x) => x.inputs));
  });

  it('resumes the exact sequence from a saved state, across an epoch boundary', () => {
    const original = new TokenBatcher(tokens, { batchSize, seqLen, seed: 11 });
    take(original, 5);
    const saved = JSON.parse(JSON.stringify(original.state())) as BatcherState;
    const expected = take(original, 7);
    const resumed = new TokenBatcher(tokens, { batchSize, seqLen, seed: 0 });
    resumed.restore(saved);
    expect(take(resumed, 7)).toEqual(expected);
  });

  it('rejects a state that does not fit the data', () => {
    const batcher = new TokenBatcher(tokens, { batchSize, seqLen, seed: 0 });
    expect(() => batcher.restore({ epoch: 0, position: 3, seed: 0 })).toThrow(/position 3 is outside 0\.\.2/);
  });

  it('needs enough tokens for one batch', () => {
    expect(() => new TokenBatcher(tokens.subarray(0, 12), { batchSize, seqLen, seed: 0 })).toThrow(
      /needs batchSize \* seqLen \+ 1 = 13 tokens/,
    );
  });

  it('has 597 batches per epoch for the WikiText-2 train split at batch 32, seqLen 128', () => {
    expect(windowCount(2_448_382, 128)).toBe(19_127);
    const batcher = new TokenBatcher(new Int32Array(2_448_382), { batchSize: 32, seqLen: 128, seed: 0 });
    expect(batcher.batchesPerEpoch).toBe(597);
  });
});

describe('sequentialBatches', () => {
  it('covers every window once in stream order, keeping a short last batch', () => {
    const seqLen = 4;
    const tokens = Int32Array.from({ length: 10 * seqLen + 3 }, (_, i) => i); // 10 windows and 2 spare tokens
    const batches = [...sequentialBatches(tokens, 3, seqLen)];
    expect(batches.map((b) => b.rows)).toEqual([3, 3, 3, 1]);
    const inputs = batches.flatMap((b) => Array.from(b.inputs));
    const targets = batches.flatMap((b) => Array.from(b.targets));
    expect(inputs).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(targets).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
  });
});
