import { describe, expect, it } from 'vitest';
import { KernelMemory } from './kernel-memory.js';

const MiB = 1 << 20;

describe('the kernel memory allocator', () => {
  it('hands out cache-line-aligned arrays that do not overlap, growing the memory as needed', () => {
    const mem = new KernelMemory(64 * MiB);
    const a = mem.allocFloat32(100) as Float32Array;
    const b = mem.allocFloat32(MiB) as Float32Array; // 4 MiB: the memory grows
    const c = mem.allocFloat32(3) as Float32Array;
    for (const x of [a, b, c]) expect(mem.addressOf(x) % 64).toBe(0);
    const spans = [a, b, c]
      .map((x) => [x.byteOffset, x.byteOffset + x.byteLength])
      .sort((p, q) => p[0]! - q[0]!);
    for (let i = 1; i < spans.length; i++) expect(spans[i]![0]).toBeGreaterThanOrEqual(spans[i - 1]![1]!);
    expect(mem.size).toBeGreaterThanOrEqual(4 * MiB);
  });

  it('keeps the values of arrays made before the memory grew (shared memory is never detached)', () => {
    const mem = new KernelMemory(64 * MiB);
    const a = mem.allocFloat32(1000) as Float32Array;
    a.fill(1.5);
    const before = mem.size;
    const big = mem.allocFloat32(4 * MiB) as Float32Array;
    expect(mem.size).toBeGreaterThan(before);
    big.fill(2);
    expect(a.every((v) => v === 1.5)).toBe(true);
    expect(mem.addressOf(a)).toBe(a.byteOffset); // views on the old buffer object are still known
  });

  it('does not know arrays that live elsewhere', () => {
    const mem = new KernelMemory(64 * MiB);
    expect(mem.addressOf(new Float32Array(10))).toBe(-1);
    expect(mem.addressOf(new Float32Array(new SharedArrayBuffer(64)))).toBe(-1);
    const other = new KernelMemory(64 * MiB).allocFloat32(10) as Float32Array;
    expect(mem.addressOf(other)).toBe(-1);
  });

  it('returns null past its limit, and allocates again once blocks are released', () => {
    const mem = new KernelMemory(8 * MiB);
    const first = mem.allocate(5 * MiB);
    expect(first).not.toBeNull();
    expect(mem.allocate(5 * MiB)).toBeNull();
    mem.release(first!);
    const again = mem.allocate(5 * MiB);
    expect(again?.start).toBe(first?.start);
  });

  it('merges released neighbours into one free block', () => {
    const mem = new KernelMemory(64 * MiB);
    const free0 = mem.freeBytes();
    const blocks = [mem.allocate(1000), mem.allocate(2000), mem.allocate(3000)].map((b) => b!);
    mem.release(blocks[0]!);
    mem.release(blocks[2]!);
    mem.release(blocks[1]!); // joins both sides
    expect(mem.freeBytes()).toBe(free0);
    const whole = mem.allocate(1024 + 2048 + 3008);
    expect(whole?.start).toBe(blocks[0]?.start);
  });

  it('frees an array’s block on release, once: a second release, or one of a foreign array, frees nothing', () => {
    const mem = new KernelMemory(64 * MiB);
    const used = () => mem.size - mem.freeBytes();
    const used0 = used();
    const a = mem.allocFloat32(MiB) as Float32Array;
    expect(used()).toBe(used0 + 4 * MiB);
    expect(mem.releaseFloat32(a)).toBe(true);
    expect(used()).toBe(used0);
    expect(mem.releaseFloat32(a)).toBe(false);
    expect(mem.releaseFloat32(a.subarray(0, 10))).toBe(false); // a view is not the array handed out
    expect(mem.releaseFloat32(new Float32Array(10))).toBe(false);
    expect(used()).toBe(used0);
    // The next array of that size gets the same block.
    const b = mem.allocFloat32(MiB) as Float32Array;
    expect(b.byteOffset).toBe(a.byteOffset);
  });

  it("is one per process, even for a second copy of this module (an app bundle's strategies)", async () => {
    // The query makes the loader evaluate the file again: a module instance of its own, as the copy
    // bundled into an app is.
    const copy: typeof import('./kernel-memory.js') = await import('./kernel-memory.js?copy' as string);
    const { allocKernelFloat32, inKernelMemory, kernelMemory, releaseKernelFloat32 } = await import(
      './kernel-memory.js'
    );
    expect(copy.kernelMemory).not.toBe(kernelMemory);
    expect(copy.kernelMemory()).toBe(kernelMemory());
    const a = allocKernelFloat32(MiB) as Float32Array;
    expect(copy.inKernelMemory(a)).toBe(true);
    expect(copy.releaseKernelFloat32(a)).toBe(true);
    expect(releaseKernelFloat32(a)).toBe(false);
    const b = copy.allocKernelFloat32(MiB) as Float32Array;
    expect(b.byteOffset).toBe(a.byteOffset);
    expect(inKernelMemory(b)).toBe(true);
  });
});
