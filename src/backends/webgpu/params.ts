/**
 * A kernel's small per-dispatch parameters (sizes, strides, offsets, flags) as one WGSL uniform struct.
 *
 * The struct holds only 4-byte scalars (u32, i32, f32), so its memory layout is simply the fields in
 * order, 4 bytes each, with no padding rules to get wrong. The same field list produces the WGSL
 * declaration and packs the values, so the two cannot drift apart.
 */

export type ParamType = 'u32' | 'i32' | 'f32';

export class ParamStruct<Name extends string = string> {
  readonly fields: readonly (readonly [Name, ParamType])[];

  constructor(fields: readonly (readonly [Name, ParamType])[]) {
    this.fields = fields;
  }

  /** Bytes the packed struct occupies. */
  get byteLength(): number {
    return this.fields.length * 4;
  }

  /** `struct Params { … }` and its binding at `@group(0) @binding(binding)`. */
  wgsl(binding: number): string {
    const body = this.fields.map(([name, type]) => `  ${name}: ${type},`).join('\n');
    return `struct Params {\n${body}\n}\n@group(0) @binding(${binding}) var<uniform> params: Params;\n`;
  }

  /** Writes the values into `view` at byte `offset`, little-endian as WGSL reads them. */
  pack(values: Readonly<Record<Name, number>>, view: DataView, offset: number): void {
    this.fields.forEach(([name, type], i) => {
      const v = values[name];
      const at = offset + 4 * i;
      if (type === 'u32') view.setUint32(at, v >>> 0, true);
      else if (type === 'i32') view.setInt32(at, v | 0, true);
      else view.setFloat32(at, v, true);
    });
  }
}
