/**
 * Command line: checks and tokenizes the three WikiText-2 splits into the token
 * cache, printing each split's GPT-2 token count, load time and whether it came from the cache.
 * Run it once before training so the first run does not pay for tokenizing.
 *
 *   npx tsx src/train/data/prepare.ts [cacheDir]
 */
import { DEFAULT_CACHE_DIR, tokenizeWithCache } from './tokenize.js';
import { loadSplitText, WIKITEXT2_DIR, type WikiTextSplit } from './wikitext.js';

const cacheDir = process.argv[2] ?? DEFAULT_CACHE_DIR;
for (const split of ['train', 'valid', 'test'] as const satisfies readonly WikiTextSplit[]) {
  const start = performance.now();
  const text = loadSplitText(WIKITEXT2_DIR, split);
  const loaded = performance.now();
  const { ids, fromCache, cachePath } = tokenizeWithCache(text, cacheDir);
  const done = performance.now();
  console.log(
    `${split}: ${ids.length.toLocaleString('en-US')} tokens; read+verify ${(loaded - start).toFixed(0)} ms, ` +
      `${fromCache ? 'cache read' : 'tokenize+cache write'} ${(done - loaded).toFixed(0)} ms (${cachePath})`,
  );
}
