/**
 * Which app runner a SuperNode starts by default. From source (these tests) it is the TypeScript
 * runner through tsx's loader; a build finds apps/runner.js beside it (the CLI tests run that).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { defaultRunner } from './app-process.js';

describe('the default app runner', () => {
  it('from source, is apps/runner.ts through tsx, and starts', () => {
    const runner = defaultRunner();
    expect(runner.script).toBe(fileURLToPath(new URL('../apps/runner.ts', import.meta.url)));
    expect(existsSync(runner.script)).toBe(true);
    expect(runner.execArgv?.[0]).toBe('--import');
    // Started without its environment, the runner says who starts it: it loaded and ran.
    const r = spawnSync(process.execPath, [...(runner.execArgv ?? []), runner.script, 'clientapp'], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH },
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('POLLEN_APPIO_URL is not set');
  });
});
