/**
 * A model's parameters as a table — name, shape, count — with the total, for logs and sanity checks:
 *
 *     console.log(describe(model));
 */
import { shapeToString } from '../tensor/shape.js';
import type { Module } from './module.js';

export function describe(model: Module): string {
  const rows = model.namedParameters().map(([name, p]) => [name, shapeToString(p.shape), p.size.toLocaleString('en-US')]);
  const total = ['total', '', model.parameterCount().toLocaleString('en-US')];
  const all = [['parameter', 'shape', 'count'], ...rows, total];
  const width = [0, 1, 2].map((c) => Math.max(...all.map((r) => (r[c] as string).length)));
  const line = (r: string[]): string => `${r[0]!.padEnd(width[0]!)}  ${r[1]!.padEnd(width[1]!)}  ${r[2]!.padStart(width[2]!)}`;
  const rule = '-'.repeat(width[0]! + width[1]! + width[2]! + 4);
  return [line(all[0]!), rule, ...rows.map(line), rule, line(total)].join('\n');
}
