import { spawnSync } from 'node:child_process';
import { appendFileSync, cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { layerOverrides, readLayers, renderBiomeConfig } from '../scripts/gen-layers.js';
import { tempDir } from './support/cli.js';

// The dependency direction of docs/architecture.md is what `biome check` enforces.

const ROOT = resolve(import.meta.dirname, '..');
const BIOME = join(ROOT, 'node_modules', '.bin', 'biome');
const docs = readFileSync(join(ROOT, 'docs', 'architecture.md'), 'utf8');
const t = tempDir('pollen-layers-');

beforeAll(() => {
  // A copy of the tree and the lint configuration, outside git (so without VCS integration).
  cpSync(join(ROOT, 'src'), join(t.dir, 'src'), { recursive: true });
  const config = JSON.parse(readFileSync(join(ROOT, 'biome.json'), 'utf8'));
  config.vcs = { enabled: false };
  delete config.$schema;
  writeFileSync(join(t.dir, 'biome.json'), JSON.stringify(config));
});
afterAll(() => t.cleanup());

/** Lint these files of the copy; the diagnostics are grouped per file. */
function lint(files: string[]): { code: number | null; byFile: Map<string, string> } {
  const r = spawnSync(BIOME, ['lint', '--max-diagnostics=200', ...files], { cwd: t.dir, encoding: 'utf8' });
  const out = `${r.stdout}${r.stderr}`;
  const byFile = new Map(
    files.map((f) => [
      f,
      out
        .split(/\n(?=\S+\.ts:\d+:\d+ )/)
        .filter((d) => d.startsWith(f))
        .join('\n'),
    ]),
  );
  return { code: r.status, byFile };
}

function plant(file: string, line: string): string {
  appendFileSync(join(t.dir, file), `\n${line}\n`);
  return file;
}

describe('the layering rule', () => {
  it('is generated from the table in docs/architecture.md (regenerate: npx tsx scripts/gen-layers.ts)', () => {
    const current = readFileSync(join(ROOT, 'biome.json'), 'utf8');
    expect(JSON.parse(current)).toEqual(JSON.parse(renderBiomeConfig(current, docs)));
    const layers = readLayers(docs);
    expect(layers.map((l) => l.folders)).toEqual([
      ['cli', 'demo'],
      ['superlink', 'supernode', 'enrollment'],
      ['identity', 'audit', 'apps', 'observability', 'deploy'],
      ['transport', 'store', 'pki'],
      ['sdk', 'strategies'],
      ['errors', 'util', 'gen', 'version'],
    ]);
    expect(layerOverrides(layers).length).toBeGreaterThan(10);
  });

  it('passes the tree as it is', () => {
    const r = spawnSync(BIOME, ['lint', 'src'], { cwd: t.dir, encoding: 'utf8' });
    expect(r.stdout + r.stderr).not.toContain('noRestrictedImports');
  });

  it('fails on an import that points up or across', () => {
    const cases: [string, string, RegExp][] = [
      ['src/sdk/records.ts', "import '../superlink/state.js';", /sdk may not import .*superlink/],
      ['src/pki/ca.ts', "import '../enrollment/token.js';", /pki may not import .*enrollment/],
      [
        'src/supernode/supernode.ts',
        "import '../superlink/link.js';",
        /supernode may not import .*superlink/,
      ],
      [
        'src/superlink/link.ts',
        "import '../supernode/supernode.js';",
        /superlink may not import .*supernode/,
      ],
      ['src/enrollment/service/app.ts', "import '../../cli/main.js';", /enrollment may not import .*cli/],
      ['src/transport/chunks.ts', "import '../apps/bundle.js';", /transport may not import .*apps/],
      ['src/strategies/fedavg.ts', "import '../transport/wire.js';", /strategies may not import .*transport/],
      ['src/util/files.ts', "import '../sdk/records.js';", /util may not import .*sdk/],
      ['src/demo/processes.ts', "import '../cli/main.js';", /demo may not import cli/],
      ['src/cli/commands/runs.ts', "import './supernode.js';", /a command does not import another command/],
      [
        'src/cli/token/generate.ts',
        "import '../commands/token.js';",
        /a command function does not import commander definitions/,
      ],
    ];
    const r = lint(cases.map(([file, line]) => plant(file, line)));
    expect(r.code).not.toBe(0);
    for (const [file, line, message] of cases)
      expect(r.byFile.get(file), `${file}: ${line}`).toMatch(message);
  });

  it('allows what the table allows', () => {
    const cases: [string, string][] = [
      ['src/strategies/aggregate.ts', "import '../sdk/records.js';"],
      ['src/transport/tls.ts', "import '../pki/profiles.js';"],
      ['src/cli/main.ts', "import '../demo/federation.js';"],
      ['src/superlink/run-launcher.ts', "import '../apps/bundle.js';"],
      ['src/cli/commands/index.ts', "import './runs.js';"],
      ['src/cli/commands/token.ts', "import '../token/info.js';"],
    ];
    const r = lint(cases.map(([file, line]) => plant(file, line)));
    for (const [file, line] of cases)
      expect(r.byFile.get(file), `${file}: ${line}`).not.toContain('noRestrictedImports');
  });
});
