/**
 * Bindings every log line written while a request is served carries (its request id), without
 * passing a child logger through every call: the RPC servers open a scope per call, the logger
 * (observability/log.ts) adds the scope's bindings to each line.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';

const scope = new AsyncLocalStorage<Readonly<Record<string, unknown>>>();

/** Run `fn` with `bindings` (and the enclosing scope's) on every line it logs. */
export function withLogContext<T>(bindings: Record<string, unknown>, fn: () => T): T {
  return scope.run({ ...scope.getStore(), ...bindings }, fn);
}

/** The bindings of the scope this code runs in (none outside a request). */
export function logContext(): Readonly<Record<string, unknown>> {
  return scope.getStore() ?? {};
}

/** A short id for one request, unique enough to find its lines. */
export const newRequestId = (): string => randomBytes(6).toString('hex');
