/**
 * `npm run generate -- --checkpoint DIR --prompt "..."`: continues a prompt with a trained model.
 * DIR is a run directory (its newest checkpoint is used) or one checkpoint directory.
 */
import { decode, encode } from 'gpt-tokenizer/encoding/r50k_base';
import { loadModel } from '../models/saved-model.js';
import { findCheckpoint } from './checkpoint.js';
import { choiceFlag, chooseBackend, integerFlag, numberFlag, parseFlags, runCli, UsageError } from './cli-support.js';
import { generateTokens } from './generate.js';

/** GPT-2's end-of-text token: the start of a document, used when the prompt is empty. */
const END_OF_TEXT = 50256;

const HELP = `Continue a prompt with a trained model.

  npm run generate -- --checkpoint DIR --prompt "..." [options]

  --checkpoint DIR    a run directory (its newest checkpoint) or a checkpoint directory
  --prompt TEXT       the text to continue (an empty prompt starts a new document)
  --max-tokens N      tokens to generate (100)
  --temperature X     sampling temperature; 0 is greedy (0.8)
  --top-k N           sample among the N likeliest tokens; 0 for all (40)
  --seed N            seeds the sampling (0)
  --backend NAME      webgpu or cpu (default as for training)
  -h, --help          show this help`;

const OPTIONS = {
  checkpoint: { type: 'string' },
  prompt: { type: 'string' },
  'max-tokens': { type: 'string' },
  temperature: { type: 'string' },
  'top-k': { type: 'string' },
  seed: { type: 'string' },
  backend: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

async function main(): Promise<number> {
  const values = parseFlags(OPTIONS);
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (values.checkpoint === undefined) throw new UsageError('--checkpoint DIR is required: the run or checkpoint directory to load.');
  if (values.prompt === undefined) throw new UsageError('--prompt is required: the text to continue.');
  const maxTokens = integerFlag('max-tokens', values['max-tokens'] ?? '100', 1);
  const temperature = numberFlag('temperature', values.temperature ?? '0.8', false);
  const topK = integerFlag('top-k', values['top-k'] ?? '40', 0);
  const seed = integerFlag('seed', values.seed ?? '0', Number.MIN_SAFE_INTEGER);
  const backendRequest = values.backend === undefined ? undefined : choiceFlag('backend', values.backend, ['cpu', 'webgpu'] as const);

  const path = await findCheckpoint(values.checkpoint);
  if (path === null) throw new UsageError(`There is no checkpoint in ${values.checkpoint}.`);
  const backend = await chooseBackend(backendRequest);
  process.stderr.write(`tensorscan generate: backend ${backend.name} (${backend.reason}); checkpoint ${path}\n`);
  const model = await loadModel(path).catch((error: Error) => {
    throw new UsageError(`The checkpoint ${path} is unusable: ${error.message.replace(/\.$/, '')}.`);
  });
  const prompt = values.prompt === '' ? [END_OF_TEXT] : encode(values.prompt, { disallowedSpecial: new Set() });
  const maxLen = (model.config as { maxLen?: number }).maxLen;
  if (maxLen !== undefined && prompt.length + maxTokens > maxLen) {
    throw new UsageError(`The prompt (${prompt.length} tokens) plus --max-tokens ${maxTokens} exceed the model's ${maxLen} positions.`);
  }

  // Print as the tokens come. A token can end inside a multi-byte character, which decodes to "�"
  // until the next token completes it, so text is printed only up to a complete character.
  process.stdout.write(values.prompt);
  const generated: number[] = [];
  let printed = 0;
  for await (const id of generateTokens(model, prompt, { maxTokens, temperature, topK, seed })) {
    generated.push(id);
    const text = decode(generated);
    if (!text.endsWith('\uFFFD')) {
      process.stdout.write(text.slice(printed));
      printed = text.length;
    }
  }
  process.stdout.write(`${decode(generated).slice(printed)}\n`);
  model.dispose();
  return 0;
}

await runCli(main);
