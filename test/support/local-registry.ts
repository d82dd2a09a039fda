/**
 * An npm registry on 127.0.0.1 for tests that install Pollen as a user does, with no network:
 * a packument for every package name in package-lock.json (each version the lock holds), and the
 * tarballs from the npm cache's content store, where `npm ci` put them. Every request is logged,
 * so a test can prove npm asked for nothing the lock does not hold.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..', '..');

/** The fields of a lockfile v3 `packages` entry that npm reads from a packument's version. */
const MANIFEST_FIELDS = [
  'dependencies',
  'optionalDependencies',
  'peerDependencies',
  'peerDependenciesMeta',
  'bin',
  'engines',
  'os',
  'cpu',
  'libc',
  'hasInstallScript',
] as const;

type LockEntry = { version?: string; integrity?: string; link?: boolean } & Record<string, unknown>;

export interface LocalRegistryOptions {
  /** Default: the clone's package-lock.json. */
  lockfile?: string;
  /** npm's cache folder holding `_cacache`. Default: `npm config get cache`. */
  npmCache?: string;
  /** Other files to serve, by URL path (e.g. a native module's prebuilt binary). */
  files?: Record<string, Buffer>;
}

export interface LocalRegistry {
  /** With a trailing slash, as npm's `--registry` wants it. */
  url: string;
  /** Every request in order, with the status it got. */
  requests: { url: string; status: number }[];
  /** Why each request that should have been served was refused. */
  failures: string[];
  /**
   * Optional peer dependencies the lock leaves out (as a plain install does): npm asks for their
   * packuments and is content with a 404, which is not a failure.
   */
  optionalPeers: ReadonlySet<string>;
  close: () => Promise<void>;
}

export async function startLocalRegistry(opts: LocalRegistryOptions = {}): Promise<LocalRegistry> {
  const { byName, optionalPeers } = readLock(opts.lockfile ?? join(ROOT, 'package-lock.json'));
  const content = join(opts.npmCache ?? npmCacheDir(), '_cacache', 'content-v2');
  const requests: LocalRegistry['requests'] = [];
  const failures: string[] = [];
  let base = '';

  const server = createServer((req, res) => {
    const url = req.url ?? '/';
    const answer = (status: number, body: string | Buffer, type: string) => {
      requests.push({ url, status });
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    const refuse = (why: string) => {
      failures.push(why);
      // 404, not 5xx: npm retries server errors for seconds before it gives up.
      answer(404, JSON.stringify({ error: why }), 'application/json');
    };
    const path = decodeURIComponent(url.split('?')[0] ?? '/');
    const extra = opts.files?.[path];
    if (extra) return answer(200, extra, 'application/octet-stream');
    const tarball = /^\/(.+)\/-\/[^/]+-([^/]+)\.tgz$/.exec(path);
    if (tarball) {
      const [, name = '', version = ''] = tarball;
      const entry = byName.get(name)?.get(version);
      if (!entry) return refuse(`${name}@${version} is not in package-lock.json`);
      try {
        return answer(
          200,
          readCachedTarball(content, `${name}@${version}`, entry),
          'application/octet-stream',
        );
      } catch (e) {
        return refuse((e as Error).message);
      }
    }
    const name = path.slice(1);
    const versions = byName.get(name);
    if (versions) return answer(200, JSON.stringify(packument(name, versions, base)), 'application/json');
    if (optionalPeers.has(name))
      return answer(404, '{"error":"an optional peer dependency"}', 'application/json');
    refuse(`${name} is not in package-lock.json`);
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  return {
    url: base,
    requests,
    failures,
    optionalPeers,
    close: () => new Promise((ok) => server.close(() => ok())),
  };
}

/**
 * name → version → lock entry, for every installed package of the lock (links left out), and the
 * optional peer dependencies the lock holds no package for.
 */
function readLock(path: string) {
  const lock = JSON.parse(readFileSync(path, 'utf8')) as { packages: Record<string, LockEntry> };
  const byName = new Map<string, Map<string, LockEntry>>();
  const optionalPeers = new Set<string>();
  for (const [key, entry] of Object.entries(lock.packages)) {
    const peers = (entry.peerDependenciesMeta ?? {}) as Record<string, { optional?: boolean }>;
    for (const [peer, meta] of Object.entries(peers)) if (meta.optional) optionalPeers.add(peer);
    const at = key.lastIndexOf('node_modules/');
    if (at < 0 || entry.link || !entry.version) continue;
    const name = (entry.name as string | undefined) ?? key.slice(at + 'node_modules/'.length);
    if (!byName.has(name)) byName.set(name, new Map());
    byName.get(name)?.set(entry.version, entry);
  }
  for (const name of byName.keys()) optionalPeers.delete(name);
  return { byName, optionalPeers };
}

function packument(name: string, versions: Map<string, LockEntry>, base: string) {
  const tarballName = name.split('/').pop();
  const manifests = [...versions].map(([version, entry]) => {
    const manifest: Record<string, unknown> = { name, version };
    for (const f of MANIFEST_FIELDS) if (entry[f] !== undefined) manifest[f] = entry[f];
    manifest.dist = {
      tarball: `${base}${name}/-/${tarballName}-${version}.tgz`,
      ...(entry.integrity ? { integrity: entry.integrity } : {}),
    };
    return [version, manifest] as const;
  });
  const latest = [...versions.keys()].sort(compareVersions).at(-1);
  return { name, 'dist-tags': { latest }, versions: Object.fromEntries(manifests) };
}

/** Enough of semver's order for `latest`: numeric parts, then a release after its pre-releases. */
function compareVersions(a: string, b: string): number {
  const [ra = '', pa] = a.split('-', 2);
  const [rb = '', pb] = b.split('-', 2);
  const na = ra.split('.').map(Number);
  const nb = rb.split('.').map(Number);
  for (let i = 0; i < 3; i++) if (na[i] !== nb[i]) return (na[i] ?? 0) - (nb[i] ?? 0);
  if (pa === pb) return 0;
  return pa === undefined ? 1 : pb === undefined ? -1 : pa.localeCompare(pb);
}

/**
 * The tarball from cacache's content store, addressed by its integrity digest (hex, split
 * `xx/yy/rest`), checked against that digest.
 */
function readCachedTarball(content: string, id: string, entry: LockEntry): Buffer {
  const runNpmCi = 'run `npm ci` in the clone first: it puts every dependency of the lock into the npm cache';
  const [algorithm, base64] = (entry.integrity ?? '').split(' ')[0]?.split('-', 2) ?? [];
  if (!algorithm || !base64)
    throw new Error(`${id} has no integrity in package-lock.json, so no tarball to serve`);
  const hex = Buffer.from(base64, 'base64').toString('hex');
  const file = join(content, algorithm, hex.slice(0, 2), hex.slice(2, 4), hex.slice(4));
  if (!existsSync(file))
    throw new Error(`the tarball of ${id} is not in the npm cache (${file}): ${runNpmCi}`);
  const bytes = readFileSync(file);
  if (createHash(algorithm).update(bytes).digest('hex') !== hex)
    throw new Error(
      `the tarball of ${id} in the npm cache (${file}) does not match its integrity: ${runNpmCi}`,
    );
  return bytes;
}

function npmCacheDir(): string {
  const r = spawnSync('npm', ['config', 'get', 'cache'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`npm config get cache failed: ${r.stderr}`);
  return r.stdout.trim();
}
