/**
 * The wire contracts: proto/ passes `buf lint`, and the committed code in src/gen is exactly what
 * `npm run proto` generates from it (so nobody edits generated code or forgets to regenerate).
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');
const bin = join(root, 'node_modules', '.bin');
const env = { ...process.env, PATH: `${bin}:${process.env.PATH}` };
const tmp = mkdtempSync(join(tmpdir(), 'pollen-proto-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('proto/pollen/v1', () => {
  it('passes buf lint', () => {
    const r = spawnSync(join(bin, 'buf'), ['lint'], { cwd: join(root, 'proto'), env, encoding: 'utf8' });
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });

  it('matches the generated code committed in src/gen', () => {
    cpSync(join(root, 'proto'), join(tmp, 'proto'), { recursive: true });
    const gen = readFileSync(join(tmp, 'proto', 'buf.gen.yaml'), 'utf8').replace(
      'out: ../src/gen',
      'out: ../gen',
    );
    writeFileSync(join(tmp, 'proto', 'buf.gen.yaml'), gen);
    const r = spawnSync(join(bin, 'buf'), ['generate'], { cwd: join(tmp, 'proto'), env, encoding: 'utf8' });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const dir = join('pollen', 'v1');
    const files = readdirSync(join(tmp, 'gen', dir)).sort();
    expect(files).toEqual(readdirSync(join(root, 'src', 'gen', dir)).sort());
    for (const f of files)
      expect(
        readFileSync(join(tmp, 'gen', dir, f), 'utf8'),
        `src/gen/${dir}/${f} is stale: npm run proto`,
      ).toBe(readFileSync(join(root, 'src', 'gen', dir, f), 'utf8'));
  });
});
