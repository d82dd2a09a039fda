/**
 * deploy/ holds what `pollen deploy …` generates for the sample project (scripts/gen-deploy-samples.ts):
 * every file is current, and no stale file lingers in a generated folder.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEPLOY_DIR, deploySamples, SECTIONS } from '../scripts/gen-deploy-samples.js';

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
});
