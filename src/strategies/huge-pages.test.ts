import { readFileSync } from 'node:fs';
import koffi from 'koffi';
import { afterEach, describe, expect, it } from 'vitest';
import { expectedPageAdvice } from '../../test/support/pages.js';
import { adviseHugePages, hugePageSetting } from './huge-pages.js';
import { KernelMemory } from './kernel-memory.js';

const MiB = 1 << 20;

/** What Linux says of the mapping that holds `a`: its VmFlags and its 2 MiB pages, from /proc/self/smaps. */
function mappingOf(a: ArrayBufferView): { flags: string[]; hugeKiB: number } {
  const at = BigInt(koffi.address(a) as bigint | number);
  for (const block of readFileSync('/proc/self/smaps', 'utf8').split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/)) {
    const [start, end] = (block.split(' ')[0] as string).split('-').map((h) => BigInt(`0x${h}`));
    if (start === undefined || end === undefined || at < start || at >= end) continue;
    return {
      flags: /VmFlags:(.*)/.exec(block)?.[1]?.trim().split(/\s+/) ?? [],
      hugeKiB: Number(/AnonHugePages:\s+(\d+) kB/.exec(block)?.[1] ?? 0),
    };
  }
  throw new Error(`no mapping in /proc/self/smaps holds ${at.toString(16)}`);
}

const setting = hugePageSetting();
const expected = expectedPageAdvice();

describe('2 MiB pages for the kernel memory', () => {
  afterEach(() => {
    delete process.env.POLLEN_MADVISE_HUGEPAGE;
  });

  it("asks Linux for them when the memory grows, and the arrays' pages come 2 MiB at a time", () => {
    const mem = new KernelMemory(256 * MiB);
    const a = mem.allocFloat32(16 * MiB) as Float32Array; // 64 MiB
    a.fill(1);
    expect(mem.pages).toBe(expected);
    const m = mappingOf(a);
    // "hg": the mapping carries MADV_HUGEPAGE; only where Pollen had to ask.
    expect(m.flags.includes('hg')).toBe(expected === 'advised');
    // 2 MiB pages for part of the 64 MiB at least (Linux falls back to 4 KiB ones where memory is
    // fragmented, so not necessarily all of it).
    if (expected === 'advised' || expected === 'always') expect(m.hugeKiB).toBeGreaterThanOrEqual(8 * 1024);
    else expect(m.hugeKiB).toBe(0);
    expect(a.every((x) => x === 1)).toBe(true);
  });

  it('keeps 4 KiB pages with POLLEN_MADVISE_HUGEPAGE=0, as numpy does with NUMPY_MADVISE_HUGEPAGE=0', () => {
    process.env.POLLEN_MADVISE_HUGEPAGE = '0';
    const mem = new KernelMemory(256 * MiB);
    const a = mem.allocFloat32(16 * MiB) as Float32Array;
    a.fill(2);
    expect(mem.pages).toBe('off');
    const m = mappingOf(a);
    expect(m.flags).not.toContain('hg');
    if (setting !== 'always') expect(m.hugeKiB).toBe(0);
  });

  it('reports advice that Linux refuses (a range not on a page boundary), and the memory stays usable', () => {
    const mem = new KernelMemory(64 * MiB);
    const a = mem.allocFloat32(MiB) as Float32Array;
    const refused = adviseHugePages(a.buffer, 100, 4096);
    expect(refused).toBe(expected === 'advised' ? 'refused' : expected);
    a.fill(3);
    expect(a[a.length - 1]).toBe(3);
  });
});
