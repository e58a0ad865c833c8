/**
 * The backend registry: backends register a factory under a name; one backend is active at a time and
 * new tensors are created on it. Selecting a backend is async because a GPU must first be found.
 */
import type { Backend } from './backend.js';

type Factory = () => Backend | Promise<Backend>;

const factories = new Map<string, Factory>();
const instances = new Map<string, Backend>();
let active: Backend | null = null;

export function registerBackend(name: string, factory: Factory): void {
  factories.set(name, factory);
}

export const backendNames = (): string[] => [...factories.keys()];

/** Makes `name` the active backend, creating it on first use. */
export async function setBackend(name: string): Promise<Backend> {
  let backend = instances.get(name);
  if (!backend) {
    const factory = factories.get(name);
    if (!factory) throw new Error(`Unknown backend "${name}"; known backends: ${backendNames().join(', ')}.`);
    backend = await factory();
    instances.set(name, backend);
  }
  active = backend;
  return backend;
}

/** The active backend; the CPU backend unless another was selected. */
export function getBackend(): Backend {
  if (active) return active;
  const cpu = factories.get('cpu');
  if (!cpu) throw new Error('No backend is registered; import "tensorscan" (src/index.ts) first.');
  const backend = cpu();
  if (backend instanceof Promise) throw new Error('The CPU backend must be created synchronously.');
  instances.set('cpu', backend);
  active = backend;
  return backend;
}
