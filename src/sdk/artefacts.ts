/**
 * Run artefacts: what a ServerApp keeps of its run (the final model, metrics, plots). It saves
 * them through `context.artefacts`, never into its app folder (which may be read-only, and is
 * gone with the run): in a real run they go to the run's artefact store on the SuperLink, from
 * where `pollen pull RUN_ID` downloads them, each verified against its SHA-256.
 *
 * The name rules and limits here are checked twice: by the app process before any byte travels,
 * and by the SuperLink, which decides.
 */
import { createHash } from 'node:crypto';
import { PollenError } from '../errors.js';
import { encodeNpz } from './npz.js';
import { ArrayRecord } from './records.js';

/**
 * What an artefact holds: bytes, text (stored as UTF-8: JSON, CSV, SVG) or an ArrayRecord (stored
 * as a NumPy `.npz` archive, one `.npy` entry per array, which `np.load` reads).
 */
export type ArtefactData = Uint8Array | string | ArrayRecord;

/** An artefact as stored: its name, size in bytes and `sha256:HEX` of its bytes. */
export interface SavedArtefact {
  readonly name: string;
  readonly size: number;
  readonly hash: string;
}

/** Where a ServerApp saves the outputs of its run (`context.artefacts`). */
export interface Artefacts {
  /**
   * Keep `data` as the artefact `name`, a relative path such as `final_model.npz` or
   * `plots/loss.svg`; saving a name again replaces it. Resolves once it is stored.
   */
  save(name: string, data: ArtefactData): Promise<SavedArtefact>;
}

/** The limits the SuperLink sets on a run's artefacts. */
export interface ArtefactLimits {
  /** Largest artefact, in bytes. */
  maxBytes: number;
  /** Most bytes of a run's artefacts together. */
  runMaxBytes: number;
  /** Most artefacts per run. */
  runMaxCount: number;
}

/** Most artefacts one run keeps (documented with RUN_ARTEFACTS_FULL). */
export const MAX_RUN_ARTEFACTS = 10_000;
const MAX_NAME_LENGTH = 255;
const SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;

/**
 * Throws ARTEFACT_NAME_INVALID unless `name` is a safe relative path: segments of letters,
 * digits, `.`, `_` and `-` that do not start with `.` (so no `..`, no hidden files), joined by
 * single `/`. What `pollen pull` writes under its output folder, so it can never leave it.
 */
export function checkArtefactName(name: unknown): asserts name is string {
  const shown = JSON.stringify(String(name).slice(0, 80));
  const bad = (why: string) => new PollenError('ARTEFACT_NAME_INVALID', `Artefact name ${shown} ${why}`);
  if (typeof name !== 'string' || name === '') throw bad('is empty');
  if (name.length > MAX_NAME_LENGTH) throw bad(`is longer than ${MAX_NAME_LENGTH} characters`);
  for (const segment of name.split('/'))
    if (!SEGMENT.test(segment))
      throw bad(
        segment === ''
          ? 'has an empty path segment (a leading, trailing or double `/`)'
          : `has the segment ${JSON.stringify(segment)}: use letters, digits, \`.\`, \`_\` and \`-\`, not starting with \`.\``,
      );
}

/**
 * Throws unless the artefact `name` of `size` bytes may join `saved` (the run's artefacts, name →
 * size): ARTEFACT_NAME_INVALID if a name would be the folder of another, ARTEFACT_TOO_LARGE,
 * RUN_ARTEFACTS_FULL past the run's bytes or count (a replaced artefact's bytes do not count).
 */
export function checkArtefactFits(
  saved: ReadonlyMap<string, number>,
  name: string,
  size: number,
  limits: ArtefactLimits,
): void {
  checkArtefactName(name);
  for (const other of saved.keys())
    if (other.startsWith(`${name}/`) || name.startsWith(`${other}/`))
      throw new PollenError(
        'ARTEFACT_NAME_INVALID',
        `Artefact name "${name}" collides with the artefact "${other}": a name cannot also be a folder`,
      );
  if (size > limits.maxBytes)
    throw new PollenError(
      'ARTEFACT_TOO_LARGE',
      `Artefact "${name}" is ${mib(size)}; the SuperLink keeps artefacts of at most ${mib(limits.maxBytes)}`,
      { data: { size, maxBytes: limits.maxBytes } },
    );
  const replaced = saved.get(name);
  const count = saved.size + (replaced === undefined ? 1 : 0);
  let total = size - (replaced ?? 0);
  for (const n of saved.values()) total += n;
  if (count > limits.runMaxCount)
    throw new PollenError(
      'RUN_ARTEFACTS_FULL',
      `The run keeps at most ${limits.runMaxCount} artefacts; "${name}" would be one more`,
      { data: { runMaxCount: limits.runMaxCount } },
    );
  if (total > limits.runMaxBytes)
    throw new PollenError(
      'RUN_ARTEFACTS_FULL',
      `With "${name}" (${mib(size)}) the run's artefacts would hold ${mib(total)}; the SuperLink keeps at most ${mib(limits.runMaxBytes)} per run`,
      { data: { size, runMaxBytes: limits.runMaxBytes } },
    );
}

const mib = (n: number): string => `${Math.round((n / (1024 * 1024)) * 10) / 10} MiB`;

/** The bytes of `data` as the artefact stores them, in parts (views where possible, see npz.ts). */
export function artefactParts(data: ArtefactData): Uint8Array[] {
  if (typeof data === 'string') return [new TextEncoder().encode(data)];
  if (data instanceof Uint8Array) return [data];
  if (data instanceof ArrayRecord || isArrayRecordLike(data)) return encodeNpz(data);
  throw new PollenError('INVALID_ARGUMENT', 'An artefact is a Uint8Array, a string or an ArrayRecord');
}

/** An ArrayRecord made by a bundled copy of the SDK (instanceof fails across copies). */
function isArrayRecordLike(v: unknown): v is ArrayRecord {
  return typeof v === 'object' && v !== null && (v as { kind?: unknown }).kind === 'array';
}

/** Name, size and `sha256:HEX` of an artefact's parts. */
export function describeArtefact(name: string, parts: readonly Uint8Array[]): SavedArtefact {
  const hash = createHash('sha256');
  let size = 0;
  for (const p of parts) {
    hash.update(p);
    size += p.byteLength;
  }
  return { name, size, hash: `sha256:${hash.digest('hex')}` };
}

/**
 * Artefacts kept in memory: the default of `createContext`, for simulations and tests, where a
 * ServerApp runs without a SuperLink. `get` returns what was saved, as the bytes a real run
 * would store.
 *
 * @example
 * ```ts
 * const artefacts = new MemoryArtefacts();
 * await serverApp.run(grid, createContext({ runId: 'sim', nodeId: SERVER_NODE_ID, artefacts }));
 * writeFileSync('final_model.npz', artefacts.get('final_model.npz')!);
 * ```
 */
export class MemoryArtefacts implements Artefacts {
  readonly #saved = new Map<string, { info: SavedArtefact; bytes: Uint8Array }>();
  readonly #limits: ArtefactLimits;

  /** Limits as a SuperLink would set them (default: none but the name rules). */
  constructor(limits: Partial<ArtefactLimits> = {}) {
    this.#limits = {
      maxBytes: Number.POSITIVE_INFINITY,
      runMaxBytes: Number.POSITIVE_INFINITY,
      runMaxCount: MAX_RUN_ARTEFACTS,
      ...limits,
    };
  }

  async save(name: string, data: ArtefactData): Promise<SavedArtefact> {
    const parts = artefactParts(data);
    const info = describeArtefact(name, parts);
    const sizes = new Map([...this.#saved].map(([n, a]) => [n, a.info.size]));
    checkArtefactFits(sizes, name, info.size, this.#limits);
    const bytes = new Uint8Array(info.size);
    let at = 0;
    for (const p of parts) {
      bytes.set(p, at);
      at += p.byteLength;
    }
    this.#saved.set(name, { info, bytes });
    return info;
  }

  /** The bytes saved as `name` (undefined if none were). */
  get(name: string): Uint8Array | undefined {
    return this.#saved.get(name)?.bytes;
  }

  /** What was saved, by name. */
  list(): SavedArtefact[] {
    return [...this.#saved.values()].map((a) => a.info).sort((a, b) => (a.name < b.name ? -1 : 1));
  }
}

/** The `context.artefacts` of a ClientApp: its outputs stay on its site. */
export const CLIENT_ARTEFACTS: Artefacts = Object.freeze({
  save: async (): Promise<SavedArtefact> => {
    throw new PollenError('ARTEFACTS_UNAVAILABLE', 'A ClientApp cannot save run artefacts');
  },
});
