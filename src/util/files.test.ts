import { mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeFileAtomic, writeNewFile, writeSecretFile } from './files.js';

const folder = () => mkdtempSync(join(tmpdir(), 'pollen-files-'));

describe('files', () => {
  it('writes secrets readable by their owner only, replacing what was there', () => {
    const dir = folder();
    const path = join(dir, 'token.json');
    writeFileSync(path, 'old', { mode: 0o644 });
    writeSecretFile(path, 'new');
    expect(readFileSync(path, 'utf8')).toBe('new');
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir)).toEqual(['token.json']);
  });

  it('leaves neither a half-written file nor its temp file behind when the write fails', () => {
    const dir = folder();
    const path = join(dir, 'model.npz');
    mkdirSync(path); // a folder where the file should go: the rename fails
    expect(() => writeFileAtomic(path, 'bytes')).toThrow(/EISDIR|ENOTEMPTY|EEXIST/);
    expect(readdirSync(dir)).toEqual(['model.npz']);
    expect(statSync(path).isDirectory()).toBe(true);
  });

  it('gives two writes in the same millisecond temp files of their own', () => {
    const dir = folder();
    const path = join(dir, 'a.bin');
    for (let i = 0; i < 20; i++) writeFileAtomic(path, String(i));
    expect(readFileSync(path, 'utf8')).toBe('19');
    expect(readdirSync(dir)).toEqual(['a.bin']);
  });

  it('never overwrites a file that must be new', () => {
    const dir = folder();
    const path = join(dir, 'ca.key');
    writeNewFile(path, 'key', 0o600);
    expect(() => writeNewFile(path, 'other', 0o600)).toThrow(/EEXIST/);
    expect(readFileSync(path, 'utf8')).toBe('key');
  });
});
