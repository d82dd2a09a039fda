import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/**
 * Write a file atomically (temp file + rename) with the given mode. Secrets (private keys,
 * tokens, API keys) are written 0600 from the first byte: the temp file is opened with that mode,
 * so there is never a moment when the content is readable by others.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): void {
  const tmp = partPath(path);
  try {
    writeNewFile(tmp, data, mode);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/** A hidden temp file's path beside `path`, renamed into place once its content is complete. */
export function partPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.part`);
}

export function writeSecretFile(path: string, data: string | Uint8Array): void {
  writeFileAtomic(path, data, 0o600);
}

/**
 * Create a file that must not exist yet (EEXIST otherwise), e.g. a CA key: never overwritten.
 * Opened with `mode`, so its content is never readable by more than `mode` allows.
 */
export function writeNewFile(path: string, data: string | Uint8Array, mode = 0o644): void {
  mkdirSync(dirname(path), { recursive: true });
  const fd = openSync(path, 'wx', mode);
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
  } finally {
    closeSync(fd);
  }
  chmodSync(path, mode);
}
