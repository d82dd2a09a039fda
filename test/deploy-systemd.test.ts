/**
 * `pollen deploy systemd` writes units that systemd itself accepts (`systemd-analyze verify`) and
 * whose exposure score (`systemd-analyze security --offline=true`) stays at or under a fixed
 * threshold, for every component and its variants (a GPU SuperNode, a Certificate Service on a
 * port below 1024).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pollenInProcess, tempDir } from './support/cli.js';

/** The highest exposure score (×10, as --threshold counts) a generated unit may have. */
const THRESHOLD = 16;

const tmp = tempDir('pollen-systemd-');
afterAll(tmp.cleanup);
// verify checks that ExecStart's program exists: a stand-in for the host's /usr/bin/pollen.
const POLLEN = join(tmp.dir, 'pollen');
writeFileSync(POLLEN, '#!/bin/sh\n');
chmodSync(POLLEN, 0o755);

const analyze = (...args: string[]) => spawnSync('systemd-analyze', args, { encoding: 'utf8' });

const VARIANTS: Record<string, string[]> = {
  superlink: ['--component', 'superlink', '--kit', '/var/lib/pollen/superlink'],
  supernode: ['--component', 'supernode', '--kit', '/var/lib/pollen/site-1', '--python-env', '/opt/venv'],
  'supernode-gpu': ['--component', 'supernode', '--kit', '/var/lib/pollen/site-1', '--gpus'],
  'cert-service': [
    '--component',
    'cert-service',
    '--ca',
    '/etc/pollen/ca',
    '--hostname',
    'certs.example.org',
  ],
  'cert-service-443': ['--component', 'cert-service', '--ca', '/etc/pollen/ca', '--port', '443'],
};

async function generate(variant: string): Promise<string> {
  const out = join(tmp.dir, variant);
  const r = await pollenInProcess([
    'deploy',
    'systemd',
    ...VARIANTS[variant]!,
    '--pollen',
    POLLEN,
    '-o',
    out,
    '--force',
    '--json',
  ]);
  expect(r.code, r.stdout + r.stderr).toBe(0);
  const unit = r.json<{ files: { path: string }[] }>().files.find((f) => f.path.endsWith('.service'))!;
  return join(out, unit.path);
}

describe('pollen deploy systemd', () => {
  it.each(Object.keys(VARIANTS))('%s: systemd-analyze verify accepts the unit', async (variant) => {
    const unit = await generate(variant);
    const v = analyze('verify', unit);
    expect(v.stderr).toBe('');
    expect(v.status).toBe(0);
  });

  it.each(Object.keys(VARIANTS))(`%s: exposure score at most ${THRESHOLD / 10}`, async (variant) => {
    const unit = await generate(variant);
    const s = analyze('security', '--offline=true', `--threshold=${THRESHOLD}`, unit);
    const score = /Overall exposure level for \S+: ([\d.]+)/.exec(s.stdout)?.[1];
    expect(Number(score), s.stdout).toBeLessThanOrEqual(THRESHOLD / 10);
    expect(s.status).toBe(0);
  });

  it('grants CAP_NET_BIND_SERVICE only for a port below 1024', async () => {
    const low = readFileSync(await generate('cert-service-443'), 'utf8');
    expect(low).toContain('\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n');
    const high = readFileSync(await generate('cert-service'), 'utf8');
    expect(high).toContain('\nCapabilityBoundingSet=\n');
  });

  it('waits for readiness on the ops listener of the port map', async () => {
    const unit = readFileSync(await generate('superlink'), 'utf8');
    expect(unit).toContain(`ExecStartPost=${POLLEN} ready 127.0.0.1:9095 --timeout 60`);
    expect(unit).toContain('ReadWritePaths=/var/lib/pollen/superlink');
  });

  it('refuses a SuperLink without a kit, with one JSON document', async () => {
    const r = await pollenInProcess([
      'deploy',
      'systemd',
      '--component',
      'superlink',
      '-o',
      tmp.dir,
      '--json',
    ]);
    expect(r.code).toBe(2);
    expect(r.json<{ error: { code: string; message: string } }>().error).toMatchObject({
      code: 'USAGE',
      message: expect.stringContaining('--kit DIR'),
    });
  });

  it('never replaces a file without --force', async () => {
    const args = ['deploy', 'systemd', ...VARIANTS.superlink!, '-o', join(tmp.dir, 'twice'), '--json'];
    expect((await pollenInProcess(args)).code).toBe(0);
    const again = await pollenInProcess(args);
    expect(again.code).toBe(6);
    expect(again.json<{ error: { code: string; hint: string } }>().error).toMatchObject({
      code: 'FILE_EXISTS',
      hint: expect.stringContaining('--force'),
    });
    expect((await pollenInProcess([...args, '--force'])).code).toBe(0);
  });
});
