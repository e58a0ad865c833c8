/**
 * The language models and their files: output shapes, parameter counts against hand formulas,
 * gradients against finite differences, step mode against the parallel forward, generation, the
 * safetensors format, saving and loading, and memorising a short sequence with Adam. On the CPU always;
 * on WebGPU too where an adapter exists (under CI=true a missing adapter fails instead of skipping).
 */
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crossEntropy, getBackend, gradcheck, keep, manualSeed, noGrad, setBackend, type Tensor, tensor, tidy } from '../src/index.js';
import { describe as describeModel } from '../src/models/describe.js';
import { generate } from '../src/models/generate.js';
import type { LanguageModel } from '../src/models/language-model.js';
import { CausalConv1d } from '../src/models/layers/conv1d.js';
import { Linear } from '../src/models/layers/linear.js';
import { SelectiveSSM } from '../src/models/layers/selective-ssm.js';
import { type MambaConfig, mambaConfig } from '../src/models/mamba.js';
import { createModel, type ModelConfig, presets } from '../src/models/presets.js';
import { loadSafetensors, saveSafetensors } from '../src/models/safetensors.js';
import { loadModel, saveModel } from '../src/models/saved-model.js';
import { type SeedMambaConfig, seedMambaConfig } from '../src/models/seed-mamba.js';
import type { TransformerConfig } from '../src/models/transformer.js';
import { Adam } from '../src/train/optim/adam.js';
import { openWebGpu } from './webgpu-available.js';

await setBackend('cpu');

const ids = (rows: number[][]): Tensor => tensor(rows, { dtype: 'int32' });

/** The three architectures at test size: the `tiny` presets, and the seed model shrunk to match. */
const tiny: Record<string, ModelConfig> = {
  mamba: presets['mamba-tiny'],
  transformer: presets['transformer-tiny'],
  'seed-mamba': { ...seedMambaConfig, vocabSize: 64, dModel: 16, dState: 4, dtRank: 1 },
};

/** Smaller still, so a finite-difference check of every parameter takes a second or two. */
const micro: Record<string, ModelConfig> = {
  mamba: mambaConfig({ vocabSize: 8, dModel: 4, nLayers: 2, dState: 2, dConv: 3 }),
  transformer: { arch: 'transformer', vocabSize: 8, dModel: 4, nLayers: 2, nHeads: 2, maxLen: 6, dropout: 0 },
  'seed-mamba': { ...seedMambaConfig, vocabSize: 8, dModel: 4, dState: 2, dtRank: 1 },
};

const build = (config: ModelConfig, seed = 1, dtype: 'float32' | 'float64' = 'float32'): LanguageModel => {
  manualSeed(seed);
  return createModel(config, { dtype }).eval();
};

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
};

/** Logits of every position from `step`, fed the columns of `rows` one at a time: (batch, len, vocab) flat. */
async function steppedLogits(model: LanguageModel, rows: number[][]): Promise<Float64Array> {
  const [batch, len] = [rows.length, (rows[0] as number[]).length];
  const state = model.initState(batch);
  const perStep: ArrayLike<number>[] = [];
  const liveBytes: number[] = [];
  for (let t = 0; t < len; t++) {
    const input = tensor(
      rows.map((r) => r[t] as number),
      [batch],
      { dtype: 'int32' },
    );
    const logits = model.step(input, state);
    perStep.push(await logits.data());
    logits.dispose();
    input.dispose();
    liveBytes.push(getBackend().liveBytes());
  }
  state.dispose();
  // A step frees everything it made except the state, which keeps its size: memory is flat in t.
  expect(new Set(liveBytes).size).toBe(1);
  const vocab = model.config.vocabSize;
  const out = new Float64Array(batch * len * vocab);
  perStep.forEach((step, t) => {
    for (let b = 0; b < batch; b++) for (let v = 0; v < vocab; v++) out[(b * len + t) * vocab + v] = step[b * vocab + v] as number;
  });
  return out;
}

async function forwardLogits(model: LanguageModel, rows: number[][]): Promise<ArrayLike<number>> {
  const logits = noGrad(() => model.forward(ids(rows)));
  const values = await logits.data();
  logits.dispose();
  return values;
}

describe('layers', () => {
  it('Linear computes x Wᵀ + b with PyTorch-style uniform ±1/√in weights', async () => {
    manualSeed(3);
    const layer = new Linear(4, 3);
    const w = (await layer.weight.data()) as Float32Array;
    const b = (await layer.bias!.data()) as Float32Array;
    expect(layer.weight.shape).toEqual([3, 4]);
    for (const v of [...w, ...b]) expect(Math.abs(v)).toBeLessThanOrEqual(0.5); // 1/√4
    const x = [1, -2, 0.5, 3];
    const y = await layer.forward(tensor([x])).data();
    for (let j = 0; j < 3; j++) {
      const expected = (b[j] as number) + x.reduce((s, xi, i) => s + xi * (w[j * 4 + i] as number), 0);
      expect(y[j]).toBeCloseTo(expected, 5);
    }
    expect(new Linear(4, 3, { bias: false }).parameterCount()).toBe(12);
  });

  it('SelectiveSSM starts from the reference initialisation', async () => {
    manualSeed(5);
    const ssm = new SelectiveSSM(32, { dState: 4, dtRank: 4 });
    expect(await ssm.A_log.toArray()).toEqual(Array.from({ length: 32 }, () => [1, 2, 3, 4].map((n) => Math.fround(Math.log(n)))));
    expect(Array.from(await ssm.D.data())).toEqual(new Array(32).fill(1));
    // softplus(dt_proj.bias) = dt, log-uniform in [dt_min, dt_max] = [0.001, 0.1]
    const dt = Array.from(await ssm.dtProj.bias!.softplus().data());
    for (const v of dt) expect(v > 0.001 * 0.9999 && v < 0.1 * 1.0001).toBe(true);
    expect(Math.min(...dt)).toBeLessThan(0.003);
    expect(Math.max(...dt)).toBeGreaterThan(0.03);
    for (const w of await ssm.dtProj.weight.data()) expect(Math.abs(w)).toBeLessThanOrEqual(0.5); // dt_rank^(−1/2)
  });

  it("CausalConv1d's one-step window gives the same output as the convolution over the sequence", async () => {
    manualSeed(4);
    const conv = new CausalConv1d(3, 4);
    const values = Array.from({ length: 2 * 3 * 6 }, (_, i) => Math.sin(i));
    const x = tensor(values, [2, 3, 6]);
    const full = await conv.forward(x).data();
    for (let t = 0; t < 6; t++) {
      // the window holds inputs t−3 … t, zeros before the start
      const window = Array.from({ length: 2 * 3 * 4 }, (_, i) => {
        const [b, c, k] = [Math.floor(i / 12), Math.floor(i / 4) % 3, i % 4];
        const s = t - 3 + k;
        return s < 0 ? 0 : (values[(b * 3 + c) * 6 + s] as number);
      });
      const y = await conv.stepWindow(tensor(window, [2, 3, 4])).data();
      for (let b = 0; b < 2; b++) for (let c = 0; c < 3; c++) expect(y[b * 3 + c]).toBeCloseTo(full[(b * 3 + c) * 6 + t] as number, 5);
    }
  });
});

describe.each(Object.entries(tiny))('%s', (_name, config) => {
  const rows = [
    [1, 5, 7, 3, 9, 2, 4],
    [8, 6, 0, 2, 2, 11, 63],
  ];

  it('maps ids (batch, len) to logits (batch, len, vocab)', () => {
    const model = build(config);
    const logits = model.forward(ids(rows));
    expect(logits.shape).toEqual([2, 7, 64]);
    expect(logits.dtype).toBe('float32');
    model.dispose();
  });

  it('step mode gives the parallel forward’s logits at every position', async () => {
    const model = build(config);
    const parallel = await forwardLogits(model, rows);
    const stepped = await steppedLogits(model, rows);
    expect(maxAbsDiff(stepped, parallel)).toBeLessThan(1e-5);
    // and the positions really differ, so the comparison means something
    expect(maxAbsDiff(stepped.subarray(0, 64), stepped.subarray(64, 128))).toBeGreaterThan(1e-3);
    model.dispose();
  });

  it('has gradients equal to finite differences for every parameter (float64)', async () => {
    const model = build(micro[_name] as ModelConfig, 2, 'float64');
    const params = model.parameters();
    // gradcheck perturbs the tensors it is given; fn copies them into the parameters before each
    // forward (the originals when gradcheck passes a parameter itself), so the model sees them.
    const originals = params.map((p) => keep(noGrad(() => p.mul(1))));
    const input = ids([
      [1, 5, 7, 3, 0],
      [2, 2, 6, 4, 1],
    ]);
    const fn = (...values: Tensor[]): Tensor => {
      values.forEach((v, i) => {
        params[i]!.assign(v === params[i] ? originals[i]! : v);
      });
      return model.forward(input);
    };
    const { maxAbsError } = await gradcheck(fn, params);
    expect(maxAbsError).toBeLessThan(1e-6);
    model.dispose();
    for (const o of originals) o.dispose();
  });

  it('generates greedily what the parallel forward ranks first, and samples reproducibly', async () => {
    const model = build(config);
    const prompt = [3, 1, 4];
    const greedy = await generate(model, prompt, { maxTokens: 5, temperature: 0 });
    const sequence = [...prompt];
    for (let i = 0; i < 5; i++) {
      const logits = await forwardLogits(model, [sequence]);
      const last = Array.from(logits).slice(-64);
      sequence.push(last.indexOf(Math.max(...last)));
    }
    expect([...greedy]).toEqual(sequence.slice(prompt.length));
    expect([...(await generate(model, prompt, { maxTokens: 5, temperature: 1, topK: 1 }))]).toEqual([...greedy]);
    const a = await generate(model, prompt, { maxTokens: 20, temperature: 2, seed: 7 });
    const b = await generate(model, prompt, { maxTokens: 20, temperature: 2, seed: 7 });
    const c = await generate(model, prompt, { maxTokens: 20, temperature: 2, seed: 8 });
    expect([...a]).toEqual([...b]);
    expect([...a]).not.toEqual([...c]);
    model.dispose();
  });

  it('saves and loads to identical logits', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tensorscan-model-'));
    try {
      const model = build(config, 5);
      await saveModel(dir, model, config);
      const loaded = await loadModel(dir);
      expect(loaded.config).toEqual(config);
      expect(Array.from(await forwardLogits(loaded, rows))).toEqual(Array.from(await forwardLogits(model, rows)));
      model.dispose();
      loaded.dispose();
    } finally {
      await rm(dir, { recursive: true });
    }
  });

  it('memorises a short repeated sequence in 200 Adam steps', async () => {
    const model = build(config, 6).train();
    const pattern = [5, 17, 3, 42, 9, 28, 11, 60];
    const sequence = [...pattern, ...pattern];
    const x = ids([sequence.slice(0, -1)]);
    const y = ids([sequence.slice(1)]);
    const optimizer = new Adam(model.namedParameters(), { lr: 1e-2 });
    let loss = Number.NaN;
    for (let step = 0; step < 200; step++) {
      const l = tidy(() => {
        const value = crossEntropy(model.forward(x), y);
        value.backward();
        return value;
      });
      optimizer.step();
      optimizer.zeroGrad();
      if (step === 199) loss = await l.item();
      l.dispose();
    }
    expect(loss).toBeLessThan(0.05);
    model.dispose();
  });
});

describe('TransformerLM', () => {
  it('refuses to run past max_len, in forward and in step', () => {
    const model = build(micro.transformer as ModelConfig); // max_len 6
    expect(() => model.forward(ids([[1, 2, 3, 4, 5, 6, 7]]))).toThrow('Transformer: a sequence of 7 tokens is longer than max_len 6.');
    const state = model.initState(1);
    for (let t = 0; t < 6; t++) model.step(tensor([t], [1], { dtype: 'int32' }), state).dispose();
    expect(() => model.step(tensor([0], [1], { dtype: 'int32' }), state)).toThrow(
      'Transformer: the cache is full; the model cannot see past max_len 6 tokens.',
    );
    state.dispose();
    model.dispose();
  });
});

describe('parameter counts', () => {
  /** Hand counts from the architecture, term by term. */
  const total = (terms: number[]): number => terms.reduce((a, b) => a + b, 0);
  const mambaCount = ({ vocabSize: V, dModel: d, nLayers: L, dState: N, dConv: K, expand, dtRank: R }: MambaConfig): number => {
    const di = expand * d;
    const layer = total([
      d * 2 * di, // in_proj (no bias)
      di * K + di, // conv1d weight and bias
      di * (R + 2 * N), // x_proj (no bias)
      R * di + di, // dt_proj weight and bias
      di * N, // A_log
      di, // D
      di * d, // out_proj (no bias)
      d, // RMSNorm
    ]);
    return total([V * d, L * layer, d]); // tied embedding/head, layers, final RMSNorm
  };
  const transformerCount = ({ vocabSize: V, dModel: d, nLayers: L, maxLen: T }: TransformerConfig): number => {
    const layer = total([
      2 * d, // LayerNorm 1
      3 * d * d + 3 * d, // qkv
      d * d + d, // out proj
      2 * d, // LayerNorm 2
      4 * d * d + 4 * d, // MLP up
      4 * d * d + d, // MLP down
    ]);
    return total([V * d, T * d, L * layer, 2 * d]); // tied embedding/head, positions, layers, final LayerNorm
  };
  const seedCount = ({ vocabSize: V, dModel: d, dState: N, dtRank: R }: SeedMambaConfig): number =>
    total([
      V * d, // embedding
      (R + 2 * N) * d, // x_proj
      R * d + d, // dt_proj
      d * N, // A_log
      d, // D
      d * V + V, // Linear head with bias
    ]);

  const expected: [string, number, number][] = [
    ['mamba-tiny', mambaCount(presets['mamba-tiny']), 5_488],
    ['seed-mamba', seedCount(presets['seed-mamba']), 12_955_217],
    ['mamba-small', mambaCount(presets['mamba-small']), 14_618_112],
    ['transformer-tiny', transformerCount(presets['transformer-tiny']), 8_640],
    ['seed-transformer', transformerCount(presets['seed-transformer']), 8_926_848],
    ['transformer-small', transformerCount(presets['transformer-small']), 16_287_488],
  ];

  it.each(expected)('%s: describe() totals the hand count', (name, hand, literal) => {
    expect(hand).toBe(literal);
    const model = createModel(name as keyof typeof presets);
    expect(model.parameterCount()).toBe(hand);
    const table = describeModel(model);
    expect(table.split('\n').at(-1)).toMatch(new RegExp(`^total\\s+${hand.toLocaleString('en-US')}$`));
    expect(table).toContain('embedding.weight');
    model.dispose();
  });
});

describe('safetensors', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tensorscan-st-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true });
  });

  it('round-trips every dtype, scalars and metadata, in the documented byte layout', async () => {
    const path = join(dir, 'mixed.safetensors');
    const tensors: [string, Tensor][] = [
      ['half', tensor([1.5, -2, 65504], [3], { dtype: 'float16' })],
      [
        'ints',
        tensor(
          [
            [1, -2],
            [3, 2 ** 31 - 1],
          ],
          { dtype: 'int32' },
        ),
      ],
      ['doubles', tensor([Math.PI, 1e-300], [2], { dtype: 'float64' })],
      ['floats', tensor([[[0.1]], [[0.2]]])],
      ['scalar', tensor(7)],
    ];
    await saveSafetensors(path, tensors, { note: 'hello' });
    const bytes = await readFile(path);
    const n = Number(bytes.readBigUInt64LE(0));
    expect((8 + n) % 8).toBe(0);
    const header = JSON.parse(bytes.toString('utf8', 8, 8 + n));
    expect(header.__metadata__).toEqual({ note: 'hello' });
    expect(header.ints).toMatchObject({ dtype: 'I32', shape: [2, 2] });
    expect(header.half).toMatchObject({ dtype: 'F16', shape: [3] });
    expect(header.scalar).toMatchObject({ dtype: 'F32', shape: [] });
    // widest first: the float64 tensor starts the data section; the data has no gaps
    expect(header.doubles.data_offsets).toEqual([0, 16]);
    expect(bytes.length - 8 - n).toBe(6 + 16 + 16 + 8 + 4);
    expect(bytes.readInt32LE(8 + n + header.ints.data_offsets[0] + 12)).toBe(2 ** 31 - 1);

    const { tensors: loaded, metadata } = await loadSafetensors(path);
    expect(metadata).toEqual({ note: 'hello' });
    expect([...loaded.keys()]).toEqual(tensors.map(([name]) => name));
    for (const [name, t] of tensors) {
      const l = loaded.get(name)!;
      expect([l.dtype, l.shape]).toEqual([t.dtype, t.shape]);
      expect(await l.toArray()).toEqual(await t.toArray());
    }
  });

  it('reads a file written by hand from the format description', async () => {
    const path = join(dir, 'hand.safetensors');
    const json = '{"b":{"dtype":"I32","shape":[1],"data_offsets":[8,12]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
    const data = Buffer.alloc(12);
    data.writeFloatLE(0.5, 0);
    data.writeFloatLE(-3, 4);
    data.writeInt32LE(42, 8);
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(json.length));
    await writeFile(path, Buffer.concat([length, Buffer.from(json), data]));
    const { tensors, metadata } = await loadSafetensors(path);
    expect(metadata).toEqual({});
    expect(await tensors.get('a')!.toArray()).toEqual([0.5, -3]);
    expect(await tensors.get('b')!.toArray()).toEqual([42]);
  });

  it('refuses a truncated file or a bad header in one sentence naming the file', async () => {
    const path = join(dir, 'cut.safetensors');
    await saveSafetensors(path, [['w', tensor([1, 2, 3, 4])]]);
    const size = (await readFile(path)).length;
    await truncate(path, size - 4);
    await expect(loadSafetensors(path)).rejects.toThrow(
      `Cannot load ${path}: the file is truncated (tensor "w" ends at data byte 16, but the data section has 12 bytes).`,
    );
    await truncate(path, 20);
    await expect(loadSafetensors(path)).rejects.toThrow(
      new RegExp(`^Cannot load ${path}: the file is truncated \\(the header says it is \\d+ bytes, but only 12 follow\\)\\.$`),
    );
    await truncate(path, 3);
    await expect(loadSafetensors(path)).rejects.toThrow(
      `Cannot load ${path}: the file is truncated (3 bytes, fewer than the 8-byte header length).`,
    );

    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(8n);
    await writeFile(path, Buffer.concat([length, Buffer.from('{"w": [1')]));
    await expect(loadSafetensors(path)).rejects.toThrow(
      `Cannot load ${path}: the header is not valid JSON, so this is not a safetensors file or it is corrupt.`,
    );
    const json = '{"w":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}';
    length.writeBigUInt64LE(BigInt(json.length));
    await writeFile(path, Buffer.concat([length, Buffer.from(json), Buffer.alloc(4)]));
    await expect(loadSafetensors(path)).rejects.toThrow(`Cannot load ${path}: tensor "w" has dtype BF16, which tensorscan cannot hold`);
  });

  it('refuses weights that do not match config.json, naming the first mismatch', async () => {
    const model = build(presets['mamba-tiny']);
    const modelDir = join(dir, 'model');
    await saveModel(modelDir, model);
    const configPath = join(modelDir, 'config.json');
    const weightsPath = join(modelDir, 'model.safetensors');
    await writeFile(configPath, JSON.stringify({ ...presets['mamba-tiny'], dModel: 32, dtRank: 2 }));
    await expect(loadModel(modelDir)).rejects.toThrow(
      `${weightsPath} does not match ${configPath}: Weight "embedding.weight" has shape [64, 16], but the model expects [64, 32].`,
    );
    await writeFile(configPath, JSON.stringify({ ...presets['mamba-tiny'], nLayers: 3 }));
    await expect(loadModel(modelDir)).rejects.toThrow(`${weightsPath} does not match ${configPath}: Missing weight "layers.2.mixer.A_log"`);
    await writeFile(configPath, JSON.stringify(presets['transformer-tiny']));
    await expect(loadModel(modelDir)).rejects.toThrow(`${weightsPath} does not match ${configPath}: Missing weight "positions.weight"`);
    model.dispose();
  });
});

// ---- WebGPU: the same models on the GPU agree with the CPU ----

const webgpu = await openWebGpu('the models on WebGPU');

describe.skipIf(webgpu.skip)('on WebGPU', () => {
  beforeAll(async () => {
    webgpu.requireAdapter();
    await setBackend('webgpu');
  });
  afterAll(async () => {
    await setBackend('cpu');
  });

  const rows = [
    [1, 5, 7, 3, 9, 2],
    [8, 6, 0, 2, 2, 11],
  ];

  /** Logits, the loss and the gradient of the embedding, on the active backend. */
  async function run(config: ModelConfig): Promise<{ logits: ArrayLike<number>; stepped: ArrayLike<number>; grad: ArrayLike<number> }> {
    const model = build(config);
    const logits = await forwardLogits(model, rows);
    const stepped = await steppedLogits(model, rows);
    tidy(() => crossEntropy(model.forward(ids(rows.map((r) => r.slice(0, -1)))), ids(rows.map((r) => r.slice(1)))).backward());
    const grad = await model.parameters()[0]!.grad!.data();
    model.dispose();
    return { logits, stepped, grad };
  }

  it.each(Object.entries(tiny))('%s: forward, step and gradients match the CPU', async (_name, config) => {
    const gpu = await run(config);
    await setBackend('cpu');
    const cpu = await run(config);
    await setBackend('webgpu');
    expect(maxAbsDiff(gpu.logits, cpu.logits)).toBeLessThan(1e-4);
    expect(maxAbsDiff(gpu.stepped, gpu.logits)).toBeLessThan(1e-4);
    expect(maxAbsDiff(gpu.grad, cpu.grad)).toBeLessThan(1e-4);
  });
});
