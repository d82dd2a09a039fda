/**
 * The kernel's memory: one shared, growable `WebAssembly.Memory` that the aggregation kernel
 * (wasm-kernel.ts) reads, and an allocator over it. Arrays that will be averaged (a ServerApp's
 * received float32 updates, see transport/wire.ts) are decoded straight into it, so the kernel
 * reads them in place, and worker threads that share the memory split the work without copies.
 *
 * Allocation: first fit over a sorted free list, blocks rounded to 64 bytes (a cache line; the
 * kernel's loads never straddle two blocks). The memory grows on demand up to a limit (default a
 * quarter of the machine's memory, at most 4 GiB, the most a 32-bit WebAssembly memory
 * addresses); past it, or where WebAssembly threads are missing, `allocFloat32` returns null and
 * the caller uses ordinary memory. WebAssembly memory never shrinks: freed blocks are reused.
 *
 * Lifetime: a block is freed when the Float32Array handed out is garbage-collected
 * (FinalizationRegistry), or earlier by `releaseKernelFloat32` from code that knows nothing uses
 * it any more (Strategy.start, once a round's replies are aggregated: garbage collection may come
 * many rounds later, and the memory would grow by a round's replies each time). A view made from
 * it (`subarray`, `new Float32Array(a.buffer, …)`) does not keep the block alive: keep the array
 * itself, or `slice()` a copy.
 */
import { totalmem } from 'node:os';
import { adviseHugePages, type PageAdvice } from './huge-pages.js';
import { MAX_PAGES } from './wasm-kernel.js';

const PAGE = 65536;
const ALIGN = 64;

interface Block {
  start: number;
  size: number;
}

/** The memory, its allocator and the set of `memory.buffer` objects it has handed out views on. */
export class KernelMemory {
  readonly memory: WebAssembly.Memory;
  private free: Block[] = [];
  private limit: number;
  /** Every SharedArrayBuffer object this memory has shown (one per growth): views on any of them are ours. */
  private readonly buffers = new WeakSet<ArrayBufferLike>();
  private current: SharedArrayBuffer;
  private readonly registry = new FinalizationRegistry<Block>((b) => this.release(b));
  /** The block of each array handed out and not yet released. */
  private readonly blocks = new WeakMap<Float32Array, Block>();
  /** Whether the memory asked Linux for 2 MiB pages, and with what result (huge-pages.ts). */
  pages: PageAdvice | 'not grown yet' = 'not grown yet';

  constructor(limitBytes: number) {
    this.memory = new WebAssembly.Memory({ initial: 1, maximum: MAX_PAGES, shared: true });
    this.limit = Math.min(limitBytes, MAX_PAGES * PAGE);
    this.current = this.memory.buffer as unknown as SharedArrayBuffer;
    this.buffers.add(this.current);
    this.free.push({ start: ALIGN, size: PAGE - ALIGN }); // address 0 stays unused
  }

  /** The memory's size in bytes now. */
  get size(): number {
    return this.current.byteLength;
  }

  /** Changes the most the memory may grow to (it never shrinks below its size now). */
  setLimit(bytes: number): void {
    this.limit = Math.min(bytes, MAX_PAGES * PAGE);
  }

  /** A block of `bytes` (rounded up to 64), or null when the memory cannot grow that far. */
  allocate(bytes: number): Block | null {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    let i = this.free.findIndex((b) => b.size >= size);
    if (i < 0 && !this.grow(size)) return null;
    if (i < 0) i = this.free.findIndex((b) => b.size >= size);
    const b = this.free[i] as Block;
    const block = { start: b.start, size };
    if (b.size === size) this.free.splice(i, 1);
    else this.free[i] = { start: b.start + size, size: b.size - size };
    return block;
  }

  /** A Float32Array of `n` elements in this memory (zeroed only if never used), or null. */
  allocFloat32(n: number): Float32Array | null {
    const block = this.allocate(n * 4);
    if (block === null) return null;
    const a = new Float32Array(this.current, block.start, n);
    this.registry.register(a, block, a);
    this.blocks.set(a, block);
    return a;
  }

  /**
   * Frees the block of `a` (an array `allocFloat32` handed out) now rather than when `a` is
   * collected; false if `a` is not such an array or was released already. `a` and every view of
   * it must not be used afterwards: the block is reused.
   */
  releaseFloat32(a: Float32Array): boolean {
    const block = this.blocks.get(a);
    if (block === undefined) return false;
    this.blocks.delete(a);
    this.registry.unregister(a);
    this.release(block);
    return true;
  }

  /** The byte address of `a` in this memory, or -1 if `a` lives elsewhere. */
  addressOf(a: ArrayBufferView): number {
    return this.buffers.has(a.buffer) ? a.byteOffset : -1;
  }

  /** Returns a block to the free list, merging it with free neighbours. */
  release(block: Block): void {
    const end = block.start + block.size;
    let i = 0;
    while (i < this.free.length && (this.free[i] as Block).start < block.start) i++;
    const prev = this.free[i - 1];
    const next = this.free[i];
    let merged: Block = { ...block };
    if (prev !== undefined && prev.start + prev.size === block.start) {
      merged = { start: prev.start, size: prev.size + block.size };
      this.free.splice(--i, 1);
    }
    if (next !== undefined && end === next.start) {
      merged.size += next.size;
      this.free.splice(i, 1);
    }
    this.free.splice(i, 0, merged);
  }

  /** Free bytes in blocks (for tests: after every array is released, all but the reserved ones). */
  freeBytes(): number {
    return this.free.reduce((s, b) => s + b.size, 0);
  }

  private grow(size: number): boolean {
    const old = this.current.byteLength;
    const last = this.free[this.free.length - 1];
    const tail = last !== undefined && last.start + last.size === old ? last.size : 0;
    const pages = Math.ceil((size - tail) / PAGE);
    if (old + pages * PAGE > this.limit) return false;
    try {
      this.memory.grow(pages);
    } catch {
      return false;
    }
    this.current = this.memory.buffer as unknown as SharedArrayBuffer;
    this.buffers.add(this.current);
    this.release({ start: old, size: pages * PAGE });
    // The whole memory, not only the new part, so Linux keeps it as one region with one advice.
    this.pages = adviseHugePages(this.current, 0, this.current.byteLength);
    return true;
  }
}

/**
 * Set to true on a Grid whose `sendAndReceive` honours `kernelMemory` (apps/remote-grid.ts):
 * Strategy.start asks only such a grid, never a wrapper that might keep the replies it passes on.
 */
export const KERNEL_MEMORY_GRID = Symbol.for('pollen.grid.kernelMemory/1');

/**
 * The process's one kernel memory, kept on globalThis: an app bundle carries its own copy of this
 * module (pollen/strategies is bundled into apps, apps/build.ts), and its strategies must find the
 * memory that the host's wire decoder receives replies into (apps/remote-grid.ts), or they would
 * neither read those replies in place nor free them. Undefined until made; null where shared
 * WebAssembly memory is missing.
 */
// Versioned: a bundle built by another Pollen whose KernelMemory differs keeps a memory of its own.
const GLOBAL = Symbol.for('pollen.kernelMemory/1');
type WithMemory = typeof globalThis & { [GLOBAL]?: KernelMemory | null };

function current(): KernelMemory | null | undefined {
  return (globalThis as WithMemory)[GLOBAL];
}

/** The process's kernel memory, made on first use; null where shared WebAssembly memory is missing. */
export function kernelMemory(): KernelMemory | null {
  const made = current();
  if (made !== undefined) return made;
  let memory: KernelMemory | null = null;
  try {
    memory = new KernelMemory(Math.floor(totalmem() / 4));
  } catch {
    // No shared WebAssembly memory here: callers use ordinary memory.
  }
  (globalThis as WithMemory)[GLOBAL] = memory;
  return memory;
}

/** Whether `a` lives in the kernel's memory (false, without making the memory, before any use). */
export function inKernelMemory(a: ArrayBufferView): boolean {
  const memory = current();
  return memory != null && memory.addressOf(a) >= 0;
}

/** `KernelMemory.releaseFloat32` on the process's kernel memory: false where `a` is not from it. */
export function releaseKernelFloat32(a: Float32Array): boolean {
  return current()?.releaseFloat32(a) ?? false;
}

/**
 * A float32 array of `n` elements in the kernel's memory, which the averaging kernel reads in
 * place and its worker threads share, or null (no room, or no shared WebAssembly memory here).
 * The contents are unspecified (a reused block keeps old values): fill every element.
 */
export function allocKernelFloat32(n: number): Float32Array | null {
  return kernelMemory()?.allocFloat32(n) ?? null;
}
