import { readFileSync } from 'node:fs';

/** Read a V8 `.cpuprofile` (from `node --cpu-prof`) and rank functions by self and total time. */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileRow {
  fn: string;
  where: string;
  selfMs: number;
  selfPct: number;
  totalMs: number;
  totalPct: number;
}

export interface ProfileSummary {
  /** Sampled time, idle excluded. */
  busyMs: number;
  idleMs: number;
  bySelf: ProfileRow[];
  byTotal: ProfileRow[];
  /** Self time grouped by package or area (node internals, GC, our code by folder). */
  byArea: { area: string; selfMs: number; selfPct: number }[];
}

function shortUrl(url: string): string {
  if (!url) return '';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) return url.slice(nm + '/node_modules/'.length);
  const dist = url.indexOf('/dist/');
  if (dist >= 0) return url.slice(dist + 1);
  return url.replace(/^file:\/\//, '');
}

function area(url: string, fn: string): string {
  if (!url) return fn.startsWith('(') ? fn : '(native)';
  if (url.startsWith('node:')) {
    const m = /^node:(?:internal\/)?([a-z_]+)/.exec(url);
    return `node:${m?.[1] ?? url}`;
  }
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  const dist = /\/dist\/(.+)\/[^/]+$/.exec(url);
  if (dist) return `pollen:${dist[1]}`;
  return shortUrl(url);
}

export function summarizeCpuProfile(file: string, top = 25): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) byId.set(n.id, n);
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const key = (n: ProfileNode) =>
    `${n.callFrame.functionName || '(anonymous)'}\u0000${shortUrl(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  const areas = new Map<string, number>();
  let idleMs = 0;
  let busyMs = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const node = byId.get(p.samples[i]!);
    if (!node) continue;
    // The delta before the next sample is the time spent in this one.
    const dt = (p.timeDeltas[i + 1] ?? 0) / 1000;
    if (node.callFrame.functionName === '(idle)') {
      idleMs += dt;
      continue;
    }
    busyMs += dt;
    const k = key(node);
    self.set(k, (self.get(k) ?? 0) + dt);
    const a = area(node.callFrame.url, node.callFrame.functionName);
    areas.set(a, (areas.get(a) ?? 0) + dt);
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const kk = key(byId.get(id)!);
      if (seen.has(kk)) continue;
      seen.add(kk);
      total.set(kk, (total.get(kk) ?? 0) + dt);
    }
  }
  const rows = (m: Map<string, number>, sortBy: 'self' | 'total') =>
    [...m.keys()]
      .map((k) => {
        const [fn, where] = k.split('\u0000') as [string, string];
        const s = self.get(k) ?? 0;
        const t = total.get(k) ?? 0;
        return {
          fn,
          where,
          selfMs: s,
          selfPct: (100 * s) / busyMs,
          totalMs: t,
          totalPct: (100 * t) / busyMs,
        };
      })
      .filter((r) => !['(root)', '(program)'].includes(r.fn) || sortBy === 'self')
      .sort((a, b) => (sortBy === 'self' ? b.selfMs - a.selfMs : b.totalMs - a.totalMs))
      .slice(0, top);
  return {
    busyMs,
    idleMs,
    bySelf: rows(self, 'self'),
    byTotal: rows(total, 'total'),
    byArea: [...areas.entries()]
      .map(([a, s]) => ({ area: a, selfMs: s, selfPct: (100 * s) / busyMs }))
      .sort((a, b) => b.selfMs - a.selfMs)
      .slice(0, top),
  };
}
