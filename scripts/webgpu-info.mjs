#!/usr/bin/env node
// Smoke test for WebGPU under Node (Dawn's bindings, npm package `webgpu`).
//
//   node scripts/webgpu-info.mjs [dawn-flag ...]
//
// Prints one line describing the adapter (info, features, key limits), then
// runs y = 2x + 1 over 1000 floats in a compute shader and checks the result.
// Exits 0 on success; on failure prints one plain sentence to stderr and
// exits non-zero.
//
// Extra arguments are passed to `create()` as Dawn flags, e.g.
//   node scripts/webgpu-info.mjs backend=vulkan
//   node scripts/webgpu-info.mjs enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia
// The environment variable WEBGPU_FLAGS (space separated) is read the same way.

const N = 1000;
const WATCHDOG_MS = 60_000;

function fail(sentence, code = 1) {
  process.stderr.write(`webgpu-info: FAILED: ${sentence}\n`);
  process.exit(code);
}

// Dawn can hang on a broken driver; never let CI wait forever.
const watchdog = setTimeout(
  () => fail(`no answer from WebGPU within ${WATCHDOG_MS / 1000} s.`, 3),
  WATCHDOG_MS,
);

const flags = [...(process.env.WEBGPU_FLAGS ?? "").split(/\s+/), ...process.argv.slice(2)].filter(
  Boolean,
);

function defaultBackend() {
  const forced = flags.find((f) => f.startsWith("backend="))?.slice("backend=".length);
  if (forced) return forced;
  if (process.env.DAWNNODE_BACKEND) return process.env.DAWNNODE_BACKEND;
  // dawn.node's default backend per platform (src/dawn/node/binding/GPU.cpp).
  return { linux: "vulkan", darwin: "metal", win32: "d3d12" }[process.platform] ?? "unknown";
}

function errorText(e) {
  return String(e?.message ?? e)
    .replace(/\s+/g, " ")
    .trim();
}

async function main() {
  let webgpu;
  try {
    webgpu = await import("webgpu");
  } catch (e) {
    fail(`cannot load the 'webgpu' package (run npm ci first): ${errorText(e)}`);
  }
  const { create, globals } = webgpu;
  const { GPUBufferUsage, GPUMapMode } = globals;

  // The object create() returns is navigator.gpu. Keep it local: a global
  // reference keeps Dawn (and so Node) alive.
  let gpu = create(flags);

  let adapter;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  } catch (e) {
    fail(`requestAdapter failed: ${errorText(e)}`);
  }
  if (!adapter) {
    fail(
      "no WebGPU adapter found; on Linux without a GPU install Mesa >= 25's lavapipe (bash scripts/setup.sh).",
    );
  }

  const info = adapter.info;
  const features = [...adapter.features].sort();
  const L = adapter.limits;
  const limits = [
    "maxStorageBufferBindingSize",
    "maxComputeWorkgroupStorageSize",
    "maxComputeInvocationsPerWorkgroup",
    "maxComputeWorkgroupsPerDimension",
    "maxBufferSize",
  ].map((k) => `${k}=${L[k]}`);
  const q = (s) => JSON.stringify(s ?? "");
  console.log(
    `webgpu: adapter vendor=${q(info.vendor)} architecture=${q(info.architecture)}` +
      ` device=${q(info.device)} description=${q(info.description)}` +
      ` backend=${defaultBackend()} fallback=${info.isFallbackAdapter ?? "?"}` +
      ` subgroupSize=${info.subgroupMinSize ?? "?"}..${info.subgroupMaxSize ?? "?"}` +
      ` flags=${q(flags.join(" "))}` +
      ` | features(${features.length})=${features.join(",")}` +
      ` | limits ${limits.join(" ")}`,
  );

  let device;
  try {
    device = await adapter.requestDevice();
  } catch (e) {
    fail(`requestDevice failed: ${errorText(e)}`);
  }
  let lostUnexpectedly = null;
  device.lost.then((l) => {
    if (l.reason !== "destroyed") lostUnexpectedly = l.message;
  });

  const t0 = performance.now();
  device.pushErrorScope("validation");
  const module = device.createShaderModule({
    code: /* wgsl */ `
      @group(0) @binding(0) var<storage, read> x: array<f32>;
      @group(0) @binding(1) var<storage, read_write> y: array<f32>;
      @compute @workgroup_size(64)
      fn main(@builtin(global_invocation_id) id: vec3u) {
        let i = id.x;
        if (i < arrayLength(&y)) {
          y[i] = 2.0 * x[i] + 1.0;
        }
      }`,
  });
  const pipeline = device.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });

  const bytes = N * 4;
  const input = new Float32Array(N);
  for (let i = 0; i < N; i++) input[i] = (i - 500) * 0.25; // exact in f32
  const xBuf = device.createBuffer({
    size: bytes,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
  });
  const yBuf = device.createBuffer({
    size: bytes,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
  });
  const readBuf = device.createBuffer({
    size: bytes,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(xBuf, 0, input);

  const bindGroup = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [
      { binding: 0, resource: { buffer: xBuf } },
      { binding: 1, resource: { buffer: yBuf } },
    ],
  });
  const encoder = device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(Math.ceil(N / 64));
  pass.end();
  encoder.copyBufferToBuffer(yBuf, 0, readBuf, 0, bytes);
  device.queue.submit([encoder.finish()]);

  const validation = await device.popErrorScope();
  if (validation) fail(`WebGPU validation error: ${errorText(validation)}`);

  try {
    await readBuf.mapAsync(GPUMapMode.READ);
  } catch (e) {
    fail(`mapping the result buffer failed: ${errorText(e)}`);
  }
  const out = new Float32Array(readBuf.getMappedRange().slice(0));
  readBuf.unmap();
  const ms = performance.now() - t0;

  if (lostUnexpectedly !== null) fail(`the GPU device was lost: ${lostUnexpectedly}`);
  for (let i = 0; i < N; i++) {
    const want = Math.fround(2 * input[i] + 1);
    if (out[i] !== want) {
      fail(`compute result is wrong at index ${i}: got ${out[i]}, expected ${want}.`);
    }
  }

  // Clean shutdown: destroy what we made, then drop every reference to Dawn so
  // nothing keeps Node's event loop alive.
  xBuf.destroy();
  yBuf.destroy();
  readBuf.destroy();
  device.destroy();
  device = undefined;
  adapter = undefined;
  gpu = undefined;

  console.log(`webgpu: compute ok (y = 2x+1 over ${N} f32 checked, ${ms.toFixed(1)} ms)`);
}

main().then(
  () => {
    clearTimeout(watchdog);
    process.exitCode = 0;
    // Should exit by itself now; if Dawn still holds the loop, force it.
    setTimeout(() => process.exit(0), 2000).unref();
  },
  (e) => fail(`unexpected error: ${errorText(e)}`),
);
