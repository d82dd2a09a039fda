import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pollenInProcess } from '../../../test/support/cli.js';
import { PYTHON } from '../../../test/support/python.js';

const work = mkdtempSync(join(tmpdir(), 'pollen-env-check-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function app(dependencies: string[]): string {
  const dir = join(work, `app-${dependencies.length}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'pyproject.toml'),
    `[project]\nname = "a"\nversion = "1.0"\ndependencies = ${JSON.stringify(dependencies)}\n`,
  );
  return dir;
}

describe('pollen env check', () => {
  it("lists each requirement, the app's and then the Python SDK's, with the version found; exit 0 when all are met", async () => {
    const r = await pollenInProcess([
      'env',
      'check',
      app(['numpy>=1.20', 'protobuf']),
      '--python',
      PYTHON,
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({ ok: true, python: PYTHON, pythonVersion: expect.stringMatching(/^3\./) });
    expect(doc.requirements.map((x: { name: string; ok: boolean }) => [x.name, x.ok])).toEqual([
      ['numpy', true],
      ['protobuf', true],
      ['grpcio', true], // the SDK's own, which the app did not name
    ]);
  });

  it('names what is missing, in one JSON document, with the code, hint and exit code', async () => {
    const r = await pollenInProcess([
      'env',
      'check',
      app(['numpy<1.0', 'surely-not-installed-pollen-dist', 'grpcio']),
      '--python',
      PYTHON,
      '--json',
    ]);
    expect(r.code).toBe(3);
    const doc = JSON.parse(r.stdout);
    expect(doc.ok).toBe(false);
    expect(doc.error).toMatchObject({
      code: 'APP_REQUIREMENTS_MISSING',
      hint: expect.stringContaining('pollen env check'),
    });
    expect(doc.error.message).toContain('surely-not-installed-pollen-dist (not installed)');
    expect(doc.requirements.map((x: { ok: boolean; found: string | null }) => x.ok)).toEqual([
      false,
      false,
      true,
      true, // protobuf: the SDK's own
    ]);
    const text = await pollenInProcess([
      'env',
      'check',
      app(['numpy<1.0', 'surely-not-installed-pollen-dist', 'grpcio']),
      '--python',
      PYTHON,
    ]);
    expect(text.stdout + text.stderr).toMatch(/missing\s+surely-not-installed-pollen-dist\s+not installed/);
    expect(text.stdout + text.stderr).toMatch(/ok\s+grpcio\s+found \d/);
  });

  it('checks a pip requirements file, and refuses pip options in it', async () => {
    const file = join(work, 'requirements.txt');
    writeFileSync(file, '# the site environment\nnumpy>=1.20  # arrays\n\n');
    const r = await pollenInProcess(['env', 'check', '--requirements', file, '--python', PYTHON, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).requirements.map((x: { requirement: string }) => x.requirement)).toEqual([
      'numpy>=1.20',
      'grpcio',
      'protobuf',
    ]);
    writeFileSync(file, '-r other.txt\n');
    const bad = await pollenInProcess(['env', 'check', '--requirements', file, '--python', PYTHON, '--json']);
    expect(JSON.parse(bad.stdout).error).toMatchObject({
      code: 'APP_INVALID',
      message: expect.stringContaining('line 1: -r other.txt'),
    });
  });

  it('says PYTHON_NOT_FOUND for an interpreter that does not run', async () => {
    const r = await pollenInProcess([
      'env',
      'check',
      app(['numpy']),
      '--python',
      join(work, 'nope'),
      '--json',
    ]);
    expect(JSON.parse(r.stdout).error.code).toBe('PYTHON_NOT_FOUND');
    expect(r.code).toBe(4);
  });
});
