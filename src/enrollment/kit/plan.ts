import { posix } from 'node:path';
import { PollenError } from '../../errors.js';
import type { KitSpec } from './spec.js';

export interface KitFile {
  /** Relative POSIX path inside the kit. */
  path: string;
  content: Buffer;
  mode: number;
  /** Secrets (the token) are written 0600 and never listed in the manifest. */
  secret?: boolean;
}

/** What the builders produce; written to disk by writeKit. */
export class KitPlan {
  readonly dirs = new Set<string>();
  private readonly byPath = new Map<string, KitFile>();
  readonly warnings: string[] = [];

  dir(path: string): void {
    this.dirs.add(path);
  }

  file(path: string, content: string | Buffer, mode = 0o644, opts: { secret?: boolean } = {}): void {
    const norm = posix.normalize(path);
    if (norm !== path || path.startsWith('/') || path.startsWith('..'))
      throw new PollenError('INTERNAL', `Kit builder produced a bad path: ${path}`);
    if (this.byPath.has(path)) throw new PollenError('INTERNAL', `Two kit builders write ${path}`);
    if (/\.key$/.test(path))
      throw new PollenError('INTERNAL', `A kit never contains a private key (${path})`);
    this.byPath.set(path, {
      path,
      content: typeof content === 'string' ? Buffer.from(content, 'utf8') : content,
      mode,
      ...(opts.secret && { secret: true }),
    });
    this.dirs.add(posix.dirname(path));
  }

  get files(): KitFile[] {
    return [...this.byPath.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  get(path: string): KitFile | undefined {
    return this.byPath.get(path);
  }
}

/** One concern of a startup kit (FLARE's lighter `Builder`). */
export interface KitBuilder {
  readonly name: string;
  build(spec: KitSpec, plan: KitPlan): void | Promise<void>;
}

/** A file's JSON content as the builders write it. */
export const json = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;
