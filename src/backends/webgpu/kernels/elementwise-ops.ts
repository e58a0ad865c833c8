/**
 * The math of every unary and binary op as a WGSL expression, spliced into the strided element-wise
 * kernel (`elementwise.ts`). CPU twins: `unary` and `binary` in `cpu/elementwise.ts`, which compute in
 * JS doubles and round once on store. Here float ops compute in f32 (so results agree to f32
 * rounding, not bit for bit) and int32 ops in i32 where that is exact, else in f32 followed by the
 * same ToInt32 a JS `Int32Array` store does.
 *
 * WGSL leaves several cases undefined that JS defines (pow of a negative base, max with NaN, tanh of
 * huge arguments on some drivers), and shader compilers may optimise as if NaN did not exist, so the
 * helpers below spell out the JS behaviour without relying on NaN comparisons.
 */
import type { BinaryOp, UnaryOp } from '../../backend.js';
import { type ComputeType, TO_INT32 } from '../wgsl.js';

/** An op as an expression over operand names (already in the compute type), giving the compute type. */
type Expr1 = (x: string) => string;
type Expr2 = (a: string, b: string) => string;

const F32_UNARY: Record<UnaryOp, Expr1> = {
  neg: (x) => `-${x}`,
  exp: (x) => `exp(${x})`,
  log: (x) => `log(${x})`,
  sqrt: (x) => `sqrt(${x})`,
  rsqrt: (x) => `1.0 / sqrt(${x})`,
  tanh: (x) => `tanhF32(${x})`,
  sigmoid: (x) => `sigmoid(${x})`,
  silu: (x) => `${x} * sigmoid(${x})`,
  gelu: (x) => `gelu(${x})`,
  softplus: (x) => `softplus(${x})`,
  relu: (x) => `select(${x}, 0.0, ${x} < 0.0)`, // keeps NaN, like Math.max(x, 0)
  abs: (x) => `abs(${x})`,
  sign: (x) => `signJs(${x})`,
  siluGrad: (x) => `siluGrad(${x})`,
  geluGrad: (x) => `geluGrad(${x})`,
};

/** int32 ops that i32 arithmetic computes exactly as JS does (wrapping like ToInt32). */
const I32_UNARY: Partial<Record<UnaryOp, Expr1>> = {
  neg: (x) => `-${x}`,
  abs: (x) => `abs(${x})`,
  sign: (x) => `sign(${x})`,
  relu: (x) => `max(${x}, 0)`,
};

// `ne` is written !(a == b): a compiler assuming no NaNs may make a != b false for NaN (lavapipe
// does), while JS's a !== b is true.
const compare = (op: string, t: ComputeType): Expr2 => {
  const [zero, one] = t === 'f32' ? ['0.0', '1.0'] : ['0', '1'];
  return op === '!=' ? (a, b) => `select(${zero}, ${one}, !(${a} == ${b}))` : (a, b) => `select(${zero}, ${one}, ${a} ${op} ${b})`;
};

const binaryTable = (t: ComputeType): Record<BinaryOp, Expr2> => ({
  add: (a, b) => `${a} + ${b}`,
  sub: (a, b) => `${a} - ${b}`,
  mul: (a, b) => `${a} * ${b}`,
  div: t === 'f32' ? (a, b) => `${a} / ${b}` : (a, b) => `divInt(${a}, ${b})`,
  pow: t === 'f32' ? (a, b) => `powJs(${a}, ${b})` : (a, b) => `powInt(${a}, ${b})`,
  maximum: t === 'f32' ? (a, b) => `maxNan(${a}, ${b})` : (a, b) => `max(${a}, ${b})`,
  minimum: t === 'f32' ? (a, b) => `minNan(${a}, ${b})` : (a, b) => `min(${a}, ${b})`,
  eq: compare('==', t),
  ne: compare('!=', t),
  lt: compare('<', t),
  le: compare('<=', t),
  gt: compare('>', t),
  ge: compare('>=', t),
});

const BINARY = { f32: binaryTable('f32'), i32: binaryTable('i32') };

/** `op(x)` in compute type `t`. */
export function unaryExpr(op: UnaryOp, t: ComputeType, x: string): string {
  if (t === 'f32') return F32_UNARY[op](x);
  const exact = I32_UNARY[op];
  return exact ? exact(x) : `toInt32(${F32_UNARY[op](`f32(${x})`)})`;
}

/** `op(a, b)` in compute type `t`. */
export const binaryExpr = (op: BinaryOp, t: ComputeType, a: string, b: string): string => BINARY[t][op](a, b);

/**
 * Helper functions the expressions call, in dependency order. A kernel includes only those its
 * expression (or an included helper) names, so each generated shader stays short.
 */
const HELPERS: readonly (readonly [name: string, wgsl: string])[] = [
  ['toInt32', TO_INT32.trim()],
  [
    'isNan',
    `// NaN tested on the bits: shader compilers may assume NaN never occurs and fold x != x to false
// (lavapipe does), but they cannot fold integer arithmetic.
fn isNan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }`,
  ],
  [
    'sigmoid',
    `// σ(x) = 1 / (1 + e^−x), evaluated as e^x / (1 + e^x) for x < 0 so that e^… never overflows.
fn sigmoid(x: f32) -> f32 {
  let e = exp(-abs(x));
  return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
}`,
  ],
  [
    'tanhF32',
    `// tanh to f32 accuracy. GPUs may evaluate WGSL's tanh as (e^2x − 1)/(e^2x + 1), which loses all
// relative precision near 0 (lavapipe: tanh(1e−8) = 3e−8) and gives ∞/∞ = NaN for large x on some
// drivers. Near 0 this uses Cephes' tanhf polynomial; elsewhere 1 − 2/(e^2|x| + 1), which has no
// cancellation for |x| ≥ 0.625 and tends to 1 without overflow trouble.
fn tanhF32(x: f32) -> f32 {
  if (isNan(x)) { return x; }
  let a = abs(x);
  if (a < 0.625) {
    let z = x * x;
    return x + x * z * ((((-5.70498872745e-3 * z + 2.06390887954e-2) * z - 5.37397155531e-2) * z + 1.33314422036e-1) * z - 3.33332819422e-1);
  }
  return sign(x) * (1.0 - 2.0 / (exp(2.0 * min(a, 20.0)) + 1.0));
}`,
  ],
  [
    'gelu',
    `// GELU, tanh approximation: 0.5·x·(1 + tanh(z)), z = √(2/π)·(x + 0.044715·x³). Written as x·σ(2z)
// (since 1 + tanh z = 2σ(2z)), which does not cancel to 0 for negative x the way 1 + tanh z does.
fn gelu(x: f32) -> f32 {
  return x * sigmoid(1.5957691216057308 * (x + 0.044715 * x * x * x));
}`,
  ],
  [
    'geluGrad',
    `// d gelu/dx = 0.5·(1 + t) + 0.5·x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²), t = tanh z; with s = σ(2z),
// 1 + t = 2s and 1 − t² = 4s(1 − s), so it is s + 2x·s·σ(−2z)·√(2/π)·(1 + 3·0.044715·x²), free of cancellation.
fn geluGrad(x: f32) -> f32 {
  let z2 = 1.5957691216057308 * (x + 0.044715 * x * x * x);
  let s = sigmoid(z2);
  return s + 2.0 * x * s * sigmoid(-z2) * 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * x * x);
}`,
  ],
  [
    'siluGrad',
    `// d silu/dx = σ(x)·(1 + x·(1 − σ(x))).
fn siluGrad(x: f32) -> f32 {
  let s = sigmoid(x);
  return s * (1.0 + x * (1.0 - s));
}`,
  ],
  [
    'log1p',
    `// log(1 + y) for y ≥ 0, accurate when y is tiny: below 0.1 by its series y − y²/2 + y³/3 − …
// (the first omitted term is < 1e−9 relative), above it as log(1 + y), where rounding 1 + y costs
// at most a few ulp. (Goldberg's trick log(u)·y/(u − 1) would be exact too, but a compiler that
// assumes real arithmetic may fold u − 1 back to y, as lavapipe's does.)
fn log1p(y: f32) -> f32 {
  if (y >= 0.1) { return log(1.0 + y); }
  return y * (1.0 - y * (1.0 / 2.0 - y * (1.0 / 3.0 - y * (1.0 / 4.0 - y * (1.0 / 5.0 - y * (1.0 / 6.0 - y * (1.0 / 7.0 - y / 8.0)))))));
}`,
  ],
  [
    'softplus',
    `// softplus(x) = log(1 + e^x), and x itself above 20 (as PyTorch and the CPU backend do).
fn softplus(x: f32) -> f32 {
  if (x > 20.0) { return x; }
  return log1p(exp(x));
}`,
  ],
  [
    'signJs',
    `// Math.sign: −1, 0 or 1, and NaN for NaN (WGSL's sign gives 0 there on some GPUs).
fn signJs(x: f32) -> f32 { return select(sign(x), x, isNan(x)); }`,
  ],
  [
    'maxNan',
    `// Math.max: NaN if either is NaN (WGSL's max may return either operand then).
fn maxNan(a: f32, b: f32) -> f32 {
  if (isNan(a)) { return a; }
  return select(max(a, b), b, isNan(b));
}`,
  ],
  [
    'minNan',
    `fn minNan(a: f32, b: f32) -> f32 {
  if (isNan(a)) { return a; }
  return select(min(a, b), b, isNan(b));
}`,
  ],
  [
    'powJs',
    `// Math.pow's rules where WGSL's pow (exp2(y·log2 x)) is undefined: x ≤ 0, y = 0, NaN.
fn powJs(x: f32, y: f32) -> f32 {
  if (y == 0.0) { return 1.0; } // even 0⁰ and NaN⁰
  if (isNan(x) || isNan(y)) { return x + y; }
  let odd = fract(0.5 * y) == 0.5; // y is an odd whole number (f32s above 2²⁴ are all even)
  if (x == 0.0) {
    let r = select(1.0 / x, x, y > 0.0); // ±0 or ±∞, with the sign of the zero
    return select(abs(r), r, odd);
  }
  if (x > 0.0) { return pow(x, y); }
  if (y == trunc(y)) { // a negative base to a whole power: odd powers are negative
    let r = pow(-x, y);
    return select(r, -r, odd);
  }
  if (x < -3.4028234e38) { return pow(-x, y); } // (−∞)^y for fractional y
  return sqrt(x); // a negative base to a fractional power: NaN
}`,
  ],
  [
    'divInt',
    `// a / b truncated, as a JS Int32Array stores it: division by zero gives ±∞ or NaN there, which store as 0.
fn divInt(a: i32, b: i32) -> i32 {
  if (b == 0) { return 0; }
  return a / b;
}`,
  ],
  [
    'powInt',
    `// a^b by repeated squaring, wrapping modulo 2³²; a negative power truncates to 0 unless a = ±1.
fn powInt(a: i32, b: i32) -> i32 {
  if (b < 0) {
    if (a == 1) { return 1; }
    if (a == -1) { return select(1, -1, (b & 1) != 0); }
    return 0;
  }
  var result = 1;
  var base = a;
  var e = u32(b);
  while (e != 0u) {
    if ((e & 1u) != 0u) { result *= base; }
    base *= base;
    e >>= 1u;
  }
  return result;
}`,
  ],
];

/** The helper functions `code` calls, directly or through other helpers, in dependency order. */
export function helpersFor(code: string): string {
  const needed = new Set<string>();
  // Walk backwards so a helper's own calls are seen before the helpers it depends on are decided.
  let text = code;
  for (let i = HELPERS.length - 1; i >= 0; i--) {
    const [name, wgsl] = HELPERS[i] as readonly [string, string];
    if (new RegExp(`\\b${name}\\(`).test(text)) {
      needed.add(name);
      text += wgsl;
    }
  }
  return HELPERS.filter(([name]) => needed.has(name))
    .map(([, wgsl]) => wgsl)
    .join('\n\n');
}
