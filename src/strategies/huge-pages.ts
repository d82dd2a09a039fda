/**
 * 2 MiB pages for the kernel's memory. Summing many updates of a million parameters or so streams
 * from dozens of places at once, and with 4 KiB pages the processor's prefetchers stop at every
 * page edge and its TLB misses: the sum runs about 1.2× slower (docs/benchmarks.md, "The two
 * targets head to head"). Linux hands out 2 MiB pages ("transparent huge pages") for memory that
 * asks for them with `madvise(MADV_HUGEPAGE)` under its default setting (`madvise`); numpy asks
 * for its large arrays this way. V8 does not ask for WebAssembly memory and Node offers no call
 * that does, so Pollen calls the C library's `madvise` through koffi (a foreign-function library
 * with prebuilt binaries; no compiler at install time).
 *
 * Advice only: where it cannot be given (not Linux, no glibc, koffi missing) or is refused, the
 * memory keeps 4 KiB pages and the kernel gives the same bits, a little slower. As with numpy's
 * NUMPY_MADVISE_HUGEPAGE, POLLEN_MADVISE_HUGEPAGE=0 turns the advice off.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { packageFile } from '../util/package-root.js';

/** Linux's `MADV_HUGEPAGE` (asm-generic/mman-common.h). */
const MADV_HUGEPAGE = 14;
const THP_ENABLED = '/sys/kernel/mm/transparent_hugepage/enabled';

/**
 * What became of the advice: `advised` (given and accepted); `always` (not needed: Linux gives
 * large pages to all memory); `never` (Linux gives none); `off` (POLLEN_MADVISE_HUGEPAGE=0);
 * `unavailable` (not Linux with glibc, or koffi missing); `refused` (madvise returned an error).
 */
export type PageAdvice = 'advised' | 'always' | 'never' | 'off' | 'unavailable' | 'refused';

type Madvise = (addr: Uint8Array, length: number, advice: number) => number;

let madvise: Madvise | null | undefined;

/** libc's madvise, loaded on first use; null where it cannot be. */
function loadMadvise(): Madvise | null {
  if (madvise !== undefined) return madvise;
  madvise = null;
  if (process.platform !== 'linux') return null;
  try {
    // From Pollen's package.json, not import.meta.url: in the CLI's bundle that is the bundle file.
    const koffi = createRequire(packageFile('package.json'))('koffi') as typeof import('koffi');
    madvise = koffi.load('libc.so.6').func('int madvise(void *addr, size_t length, int advice)') as Madvise;
  } catch {
    // No glibc (musl names its library otherwise) or no koffi binary for this platform.
  }
  return madvise;
}

/** Linux's transparent huge page setting (`always`, `madvise`, `never`), or null off Linux. */
export function hugePageSetting(): string | null {
  try {
    return /\[(\w+)\]/.exec(readFileSync(THP_ENABLED, 'utf8'))?.[1] ?? null;
  } catch {
    return null;
  }
}

/**
 * Asks for 2 MiB pages for `bytes` bytes of `buffer` from `start` (a multiple of 4096). Pages
 * already touched keep their size until Linux's khugepaged merges them; pages touched afterwards
 * come 2 MiB at a time where a whole aligned 2 MiB lies in the advised range.
 */
export function adviseHugePages(buffer: ArrayBufferLike, start: number, bytes: number): PageAdvice {
  if (process.env.POLLEN_MADVISE_HUGEPAGE === '0') return 'off';
  const setting = hugePageSetting();
  if (setting === 'always' || setting === 'never') return setting;
  const call = setting === null ? null : loadMadvise();
  if (call === null) return 'unavailable';
  try {
    return call(new Uint8Array(buffer, start, bytes), bytes, MADV_HUGEPAGE) === 0 ? 'advised' : 'refused';
  } catch {
    return 'refused'; // advice, never a reason for the memory's caller to fail
  }
}
