// Writes the layering rule of biome.json (noRestrictedImports overrides) from the layer table in
// docs/architecture.md, so the documented dependency direction is the checked one (a test checks
// biome.json is current: regenerate with `npx tsx scripts/gen-layers.ts`).
import { readFileSync, writeFileSync } from 'node:fs';

export interface Layer {
  folders: string[];
  /** Same-layer imports allowed: folder → the peers it may import. */
  also: Map<string, string[]>;
}

/** The layers of docs/architecture.md's table, top (1) first. */
export function readLayers(markdown: string): Layer[] {
  const start = markdown.indexOf('<!-- layers:');
  const end = markdown.indexOf('<!-- /layers -->');
  if (start < 0 || end < start) throw new Error('docs/architecture.md has no <!-- layers: --> table');
  const rows = markdown
    .slice(start, end)
    .split('\n')
    .filter((l) => /^\| \d+ \|/.test(l));
  return rows.map((row) => {
    const [, , folders = '', also = ''] = row.split('|').map((c) => c.trim());
    const names = (cell: string) => [...cell.matchAll(/`([a-z-]+)`/g)].map((m) => m[1]!);
    const allowed = new Map<string, string[]>();
    for (const pair of also.split(',').filter((p) => p.includes('→'))) {
      const [from = '', to = ''] = pair.split('→').map(names);
      for (const f of from) allowed.set(f, [...(allowed.get(f) ?? []), ...to]);
    }
    return { folders: names(folders), also: allowed };
  });
}

/** Layers of src/ that are a file (src/errors.ts, its catalogue's parts in src/errors/; src/version.ts). */
const FILES = new Set(['errors', 'version']);

const restrict = (groups: string[], message: string) => ({
  linter: {
    rules: {
      style: {
        noRestrictedImports: {
          level: 'error',
          options: { patterns: [{ group: groups, message }] },
        },
      },
    },
  },
});

/** One override per folder: the folders above it and its independent peers are off limits. */
export function layerOverrides(layers: Layer[]): object[] {
  const out: object[] = [];
  layers.forEach((layer, i) => {
    const above = layers.slice(0, i).flatMap((l) => l.folders);
    for (const folder of layer.folders) {
      const peers = layer.folders.filter((f) => f !== folder && !layer.also.get(folder)?.includes(f));
      const banned = [...above, ...peers].filter((f) => !FILES.has(f));
      if (banned.length === 0) continue;
      const includes = FILES.has(folder)
        ? [`src/${folder}.ts`, `src/${folder}/**`, '!**/*.test.ts']
        : [`src/${folder}/**`, '!**/*.test.ts'];
      out.push({
        includes,
        ...restrict(
          banned.map((f) => `**/${f}/**`),
          `${folder} may not import ${banned.join(', ')}: dependencies point down the layer table of docs/architecture.md`,
        ),
      });
    }
  });
  // The CLI: src/cli/commands/ holds the commander definitions (one file a group, listed by its
  // index.ts); the command functions they call live in src/cli/GROUP/COMMAND.ts.
  out.push({
    includes: ['src/cli/commands/**', '!src/cli/commands/index.ts', '!**/*.test.ts'],
    ...restrict(['./*'], 'a command does not import another command: move the shared piece to src/cli/'),
  });
  out.push({
    includes: ['src/cli/**', '!src/cli/commands/**', '!src/cli/main.ts', '!**/*.test.ts'],
    ...restrict(
      ['**/commands/**'],
      'a command function does not import commander definitions (src/cli/commands/): it takes parsed options',
    ),
  });
  return out;
}

/** biome.json with its generated overrides replaced by those of the table. */
export function renderBiomeConfig(biomeJson: string, markdown: string): string {
  type Override = { linter?: { rules?: { style?: { noRestrictedImports?: unknown } } } };
  const config = JSON.parse(biomeJson) as { overrides?: Override[] };
  // The generated overrides are the ones that restrict imports; biome.json allows no comments.
  const kept = (config.overrides ?? []).filter((o) => !o.linter?.rules?.style?.noRestrictedImports);
  config.overrides = [...kept, ...(layerOverrides(readLayers(markdown)) as Override[])];
  return `${JSON.stringify(config, null, 2)}\n`;
}

if (process.argv[1]?.endsWith('gen-layers.ts'))
  writeFileSync(
    'biome.json',
    renderBiomeConfig(readFileSync('biome.json', 'utf8'), readFileSync('docs/architecture.md', 'utf8')),
  );
