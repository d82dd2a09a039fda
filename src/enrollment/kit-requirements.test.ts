/**
 * A kit that carries the apps' Python requirements: start.sh checks the site's environment against
 * them before it starts anything, and stops with what is missing.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, POLLEN_BIN } from '../../test/support/cli.js';
import { PYTHON } from '../../test/support/python.js';
import { ExitCode } from '../errors.js';
import { planKit, resolveKitSpec, writeKit } from './kit.js';

const work = mkdtempSync(join(tmpdir(), 'pollen-kit-req-'));
beforeAll(() => ensureBuilt('cli/env/check.js'), 300_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function kit(name: string, requirements?: string[], type = 'client') {
  const { spec } = resolveKitSpec({
    name,
    type,
    endpoint: 'grpcs://server:9092:9093',
    ...(requirements && { requirements }),
  });
  const plan = await planKit(spec);
  const dir = join(work, name);
  writeKit(dir, plan, { force: false });
  return { dir, plan };
}

describe('kits carrying Python requirements', () => {
  it('write startup/requirements.txt and a start.sh that checks it; other kits are as before', async () => {
    const { plan } = await kit('site-req', ['numpy>=1.20', 'torch>=1.13']);
    expect(plan.get('startup/requirements.txt')?.content.toString()).toMatch(
      /\nnumpy>=1\.20\ntorch>=1\.13\n$/,
    );
    const start = plan.get('startup/start.sh')!.content.toString();
    expect(start).toContain('env check --requirements "$STARTUP_DIR/requirements.txt"');
    expect(spawnSync('bash', ['-n'], { input: start }).status).toBe(0);
    const plain = await kit('site-plain');
    expect(plain.plan.get('startup/requirements.txt')).toBeUndefined();
    expect(plain.plan.get('startup/start.sh')!.content.toString()).not.toContain('env check');
  });

  it('refuses requirements for an admin kit', () => {
    expect(() =>
      resolveKitSpec({
        name: 'a@example.com',
        type: 'admin',
        endpoint: 'grpcs://s:9092:9093',
        requirements: ['numpy'],
      }),
    ).toThrow(/--requirements applies to client and server kits, not to admin kits/);
  });

  it('start.sh stops before starting, naming what the environment lacks', async () => {
    const { dir } = await kit('site-missing', ['numpy>=1.20', 'surely-not-installed-pollen-dist>=2']);
    const r = spawnSync(join(dir, 'startup', 'start.sh'), [], {
      encoding: 'utf8',
      env: {
        PATH: process.env.PATH,
        HOME: work,
        POLLEN_BIN,
        POLLEN_NODE: process.execPath,
        POLLEN_PYTHON: PYTHON,
        NO_COLOR: '1',
      },
    });
    expect(r.status, r.stderr).toBe(ExitCode.INVALID_INPUT);
    const said = r.stdout + r.stderr;
    expect(said).toMatch(/missing\s+surely-not-installed-pollen-dist>=2\s+not installed/);
    expect(said).toContain(`the Python environment ${PYTHON} lacks what the apps of site-missing require`);
    expect(() => readFileSync(join(dir, 'pollen.pid'))).toThrow(); // nothing started
  });
});
