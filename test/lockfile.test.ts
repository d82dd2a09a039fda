import { spawnSync } from 'node:child_process';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { tempDir } from './support/cli.js';

const t = tempDir('pollen-lock-');
afterAll(() => t.cleanup());

it('package-lock.json lists every platform package npm ci expects (run scripts/lockfile-platforms.mjs after npm install)', () => {
  const copy = join(t.dir, 'package-lock.json');
  copyFileSync(new URL('../package-lock.json', import.meta.url), copy);
  const r = spawnSync(
    process.execPath,
    [new URL('../scripts/lockfile-platforms.mjs', import.meta.url).pathname, copy],
    {
      encoding: 'utf8',
    },
  );
  expect(r.status).toBe(0);
  expect(r.stderr).toContain('added 0 platform entries');
});
