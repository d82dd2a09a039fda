/**
 * deploy/ holds what `pollen deploy …` generates for the sample project (scripts/gen-deploy-samples.ts):
 * every file is current, and no stale file lingers in a generated folder.
 */

import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  DEPLOY_DIR,
  deploySamples,
  NETWORK_DOC,
  SECTIONS,
  withPortMap,
} from '../scripts/gen-deploy-samples.js';

const HINT = 'run: npx tsx scripts/gen-deploy-samples.ts';

describe('deploy/ samples', () => {
  const samples = deploySamples();

  it.each([...samples.keys()])('%s is what its generator makes', (path) => {
    expect(readFileSync(join(DEPLOY_DIR, path), 'utf8'), HINT).toBe(samples.get(path)!.content);
  });

  it('holds no file its generator no longer makes', () => {
    const onDisk = Object.keys(SECTIONS).flatMap((folder) =>
      readdirSync(join(DEPLOY_DIR, folder), { recursive: true, withFileTypes: true })
        .filter((e) => e.isFile())
        .map((e) => join(e.parentPath, e.name).slice(DEPLOY_DIR.length + 1)),
    );
    expect(onDisk.sort(), HINT).toEqual([...samples.keys()].sort());
  });

  it('docs/network.md shows the port map of src/deploy/port-map.ts', () => {
    const doc = readFileSync(NETWORK_DOC, 'utf8');
    expect(doc).toContain('| SuperLink · Fleet API | 9092 | tcp | site → superlink |');
    expect(doc, HINT).toBe(withPortMap(doc));
  });

  it.each([...samples.keys()].filter((p) => p.endsWith('.nft')))('%s passes nft -c', (path) => {
    const check = spawnSync('nft', ['-c', '-f', join(DEPLOY_DIR, path)], { encoding: 'utf8' });
    expect(check.stderr).toBe('');
    expect(check.status).toBe(0);
  });

  it.each([...samples.keys()].filter((p) => p.endsWith('wg0.conf')))('%s passes wg-quick strip', (path) => {
    const check = spawnSync('wg-quick', ['strip', join(DEPLOY_DIR, path)], { encoding: 'utf8' });
    // (It warns that the checked-out file is world-readable: the generator writes it 0600.)
    expect(check.status, check.stderr).toBe(0);
    // What wg itself reads: the wg-quick keys (Address) gone, the keys kept.
    expect(check.stdout).toMatch(/\[Interface\]\n(ListenPort = \d+\n)?PrivateKey = /);
    expect(check.stdout).not.toContain('Address =');
  });
});
