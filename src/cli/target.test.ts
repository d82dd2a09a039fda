import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from '../../test/support/cli.js';
import { readConnections, saveConnection, useConnection } from './connections.js';
import { resolveTarget } from './target.js';

const t = tempDir('pollen-target-');
afterAll(() => t.cleanup());

/** A config file of insecure entries (no credentials to read) with `body` as its text. */
function config(name: string, body: string[]): string {
  const path = join(t.dir, `${name}.toml`);
  writeFileSync(path, `${body.join('\n')}\n`);
  return path;
}

const TWO = [
  'default-superlink = "local"',
  '[superlinks.local]',
  'address = "127.0.0.1:9093"',
  'insecure = true',
  '[superlinks.lab]',
  'address = "lab.example.org:9093"',
  'federation = "cancer-study"',
  'insecure = true',
];

const pick = (target: string | undefined, flags: { config: string; superlink?: string }) => {
  const r = resolveTarget(target, flags);
  return [r.connection.name, r.federation, r.arg];
};

describe('the last argument of a command that talks to a SuperLink', () => {
  const path = config('two', TWO);

  it('names a connection entry: that SuperLink, with the federation the entry names (default: default)', () => {
    expect(pick('local', { config: path })).toEqual(['local', 'default', 'local']);
    expect(pick('lab', { config: path })).toEqual(['lab', 'cancer-study', 'lab']);
  });

  it('names a federation on the default connection otherwise; none: the default connection and its federation', () => {
    expect(pick('oncology', { config: path })).toEqual(['local', 'oncology', 'oncology']);
    expect(pick(undefined, { config: path })).toEqual(['local', 'default', 'local']);
  });

  it('with --superlink, is always a federation on that connection', () => {
    expect(pick('local', { config: path, superlink: 'lab' })).toEqual([
      'lab',
      'local',
      'local --superlink lab',
    ]);
    expect(pick(undefined, { config: path, superlink: 'lab' })).toEqual(['lab', 'cancer-study', 'lab']);
    expect(pick('default', { config: path, superlink: 'lab' })).toEqual([
      'lab',
      'default',
      'default --superlink lab',
    ]);
  });

  it('an unknown --superlink, no default, or no config at all: SUPERLINK_NOT_FOUND with what to do', () => {
    expect(() => resolveTarget(undefined, { config: path, superlink: 'labb' })).toThrow(
      expect.objectContaining({
        code: 'SUPERLINK_NOT_FOUND',
        hint: expect.stringContaining('Did you mean lab?'),
      }),
    );
    const noDefault = config('no-default', TWO.slice(1));
    expect(() => resolveTarget('study', { config: noDefault })).toThrow(
      expect.objectContaining({
        code: 'SUPERLINK_NOT_FOUND',
        message: expect.stringContaining('no default SuperLink'),
      }),
    );
    expect(() => resolveTarget(undefined, { config: noDefault })).toThrow(
      expect.objectContaining({ hint: expect.stringContaining('pollen config superlink use NAME') }),
    );
    expect(() => resolveTarget(undefined, { config: join(t.dir, 'missing.toml') })).toThrow(
      expect.objectContaining({ hint: expect.stringContaining('pollen config superlink add NAME') }),
    );
  });

  it('the only entry is the default one, and stays it when a second is added', () => {
    const one = config('one', TWO.slice(4));
    expect(pick(undefined, { config: one })).toEqual(['lab', 'cancer-study', 'lab']);
    saveConnection('other', { address: '127.0.0.1:9193', insecure: true }, false, one);
    expect(readConnections(one).default).toBe('lab');
    const empty = join(t.dir, 'empty.toml');
    saveConnection('first', { address: '127.0.0.1:9193', insecure: true }, false, empty);
    expect(readConnections(empty).default).toBe('first');
  });
});

describe('the config file', () => {
  it('reads entries written as [federations.NAME] before, and saves them in the form of today', () => {
    const path = config('earlier', [
      'default-federation = "old"',
      '[federations.old]',
      'address = "127.0.0.1:9093"',
      'insecure = true',
    ]);
    expect(pick(undefined, { config: path })).toEqual(['old', 'default', 'old']);
    saveConnection('new', { address: '127.0.0.1:9193', insecure: true, federation: 'study' }, false, path);
    const text = readFileSync(path, 'utf8');
    expect(text).toContain('default-superlink = "old"');
    expect(text).toContain('[superlinks.old]');
    expect(text).toContain('[superlinks.new]');
    expect(text).not.toContain('federations.');
    useConnection('new', path);
    expect(readConnections(path).default).toBe('new');
    expect(pick(undefined, { config: path })).toEqual(['new', 'study', 'new']);
    expect(() => useConnection('nope', path)).toThrow(
      expect.objectContaining({ code: 'SUPERLINK_NOT_FOUND' }),
    );
  });
});
