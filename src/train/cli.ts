/**
 * `npm run train -- [options]`: trains a language model on WikiText-2 with the GPT-2 tokenizer.
 * The command itself is train-command.ts; it runs in a worker thread so that Ctrl-C is answered at
 * once (see interruptible.ts). Run with --help for the options.
 */
import { runInWorker } from './interruptible.js';

runInWorker('./train-command', import.meta.url);
