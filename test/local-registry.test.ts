import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from './support/cli.js';
import { type LocalRegistry, startLocalRegistry } from './support/local-registry.js';

const t = tempDir('pollen-registry-');
const cached = Buffer.from('the bytes of a tarball');
const integrity = (bytes: Buffer) => `sha512-${createHash('sha512').update(bytes).digest('base64')}`;
let registry: LocalRegistry;

beforeAll(async () => {
  // A lock with one scoped package in two versions (one nested), one whose tarball is cached.
  const lockfile = join(t.dir, 'package-lock.json');
  writeFileSync(
    lockfile,
    JSON.stringify({
      lockfileVersion: 3,
      packages: {
        '': { name: 'app', version: '1.0.0' },
        'node_modules/@scope/lib': {
          version: '2.0.0',
          integrity: integrity(cached),
          dependencies: { dep: '^1.0.0' },
          os: ['linux'],
          bin: { lib: 'cli.js' },
          peerDependencies: { 'native-addon': '>=1' },
          peerDependenciesMeta: { 'native-addon': { optional: true } },
        },
        'node_modules/other/node_modules/@scope/lib': {
          version: '1.4.0',
          integrity: integrity(Buffer.from('not in the cache')),
        },
      },
    }),
  );
  const hex = createHash('sha512').update(cached).digest('hex');
  const dir = join(t.dir, 'cache', '_cacache', 'content-v2', 'sha512', hex.slice(0, 2), hex.slice(2, 4));
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, hex.slice(4)), cached);
  registry = await startLocalRegistry({ lockfile, npmCache: join(t.dir, 'cache') });
});
afterAll(async () => {
  await registry.close();
  t.cleanup();
});

describe('the local npm registry of the install test', () => {
  it('serves a scoped packument with every version of the lock, and the cached tarball it points to', async () => {
    const res = await fetch(`${registry.url}@scope%2flib`);
    expect(res.status).toBe(200);
    const doc = await res.json();
    expect(doc['dist-tags']).toEqual({ latest: '2.0.0' });
    expect(Object.keys(doc.versions).sort()).toEqual(['1.4.0', '2.0.0']);
    expect(doc.versions['2.0.0']).toMatchObject({
      name: '@scope/lib',
      dependencies: { dep: '^1.0.0' },
      os: ['linux'],
      bin: { lib: 'cli.js' },
      dist: { tarball: `${registry.url}@scope/lib/-/lib-2.0.0.tgz`, integrity: integrity(cached) },
    });
    const tarball = await fetch(doc.versions['2.0.0'].dist.tarball);
    expect(tarball.status).toBe(200);
    expect(Buffer.from(await tarball.arrayBuffer())).toEqual(cached);
  });

  it('refuses a tarball missing from the npm cache, saying to run npm ci', async () => {
    const res = await fetch(`${registry.url}@scope/lib/-/lib-1.4.0.tgz`);
    expect(res.status).toBe(404);
    const why = (await res.json()).error;
    expect(why).toMatch(/^the tarball of @scope\/lib@1\.4\.0 is not in the npm cache \(.*_cacache/);
    expect(why).toContain('run `npm ci` in the clone first');
    expect(registry.failures).toContain(why);
  });

  it('refuses a name the lock does not hold, and logs every request with its status', async () => {
    expect((await fetch(`${registry.url}pollen`)).status).toBe(404);
    expect(registry.failures).toContain('pollen is not in package-lock.json');
    expect(registry.requests.at(-1)).toEqual({ url: '/pollen', status: 404 });
  });

  it('answers 404 for an optional peer dependency the lock leaves out, which is no failure', async () => {
    const before = registry.failures.length;
    expect((await fetch(`${registry.url}native-addon`)).status).toBe(404);
    expect(registry.optionalPeers).toEqual(new Set(['native-addon']));
    expect(registry.failures).toHaveLength(before);
  });
});
