import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type BundleFile,
  type BundleManifest,
  bundleHash,
  extractBundle,
  extractedBundle,
  MANIFEST_FILE,
  MAX_BUNDLE_BYTES,
  manifestBytes,
  readBundle,
  readTar,
  sha256,
  writeTar,
} from './bundle.js';

const enc = (s: string) => new TextEncoder().encode(s);

function manifestFor(files: BundleFile[], patch: Partial<BundleManifest> = {}): BundleManifest {
  return {
    format: 1,
    name: 'demo',
    version: '1.0.0',
    serverapp: 'server.js',
    clientapp: 'client.js',
    config: { 'num-rounds': 2 },
    sdkVersion: '0.1.0',
    files: files.map((f) => ({ path: f.path, size: f.data.length, sha256: sha256(f.data) })),
    ...patch,
  };
}

const FILES: BundleFile[] = [
  { path: 'client.js', data: enc('export default 1;\n') },
  { path: 'server.js', data: enc('export default 2;\n') },
  { path: 'assets/model.bin', data: new Uint8Array(700).fill(7) },
];

function bundleOf(files: BundleFile[] = FILES, manifest = manifestFor(files)): Uint8Array {
  return writeTar([{ path: MANIFEST_FILE, data: manifestBytes(manifest) }, ...files]);
}

/** A ustar entry with any name, type and mode (the writer refuses what these tests need). */
function rawEntry(name: string, data: Uint8Array, o: { type?: string; mode?: number } = {}): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0);
  h.write(`${(o.mode ?? 0o644).toString(8).padStart(7, '0')}\0`, 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(`${data.length.toString(8).padStart(11, '0')}\0`, 124);
  h.write('00000000000\0', 136);
  h.fill(0x20, 148, 156);
  h.write(o.type ?? '0', 156);
  h.write('ustar\u000000', 257);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  const pad = Buffer.alloc((512 - (data.length % 512)) % 512);
  return Buffer.concat([h, data, pad]);
}

function rawTar(entries: Buffer[]): Uint8Array {
  return Buffer.concat([...entries, Buffer.alloc(1024)]);
}

function withManifest(files: BundleFile[], extra: Buffer[]): Uint8Array {
  const m = rawEntry(MANIFEST_FILE, manifestBytes(manifestFor(files)));
  const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : 1));
  return rawTar([m, ...sorted.map((f) => rawEntry(f.path, f.data)), ...extra]);
}

const expectInvalid = (fn: () => unknown, text: RegExp) =>
  expect(fn).toThrow(
    expect.objectContaining({ code: 'BUNDLE_INVALID', message: expect.stringMatching(text) }),
  );

describe('bundle archive', () => {
  it('writes a canonical ustar archive: manifest first, sorted, mtime 0, that tar lists', () => {
    const bytes = bundleOf();
    expect(readTar(bytes).map((f) => f.path)).toEqual([
      'pollen.json',
      'assets/model.bin',
      'client.js',
      'server.js',
    ]);
    // The same files in another order give the same bytes.
    expect(Buffer.from(bundleOf([...FILES].reverse(), manifestFor(FILES))).equals(Buffer.from(bytes))).toBe(
      true,
    );
    const dir = mkdtempSync(join(tmpdir(), 'pollen-tar-'));
    try {
      writeFileSync(join(dir, 'b.pollen'), bytes);
      const listing = execFileSync('tar', ['-tvf', join(dir, 'b.pollen')], { encoding: 'utf8' });
      expect(listing).toMatch(/-rw-r--r-- 0\/0 +700 1970-01-01 00:00 assets\/model\.bin/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads back the manifest and files and names the bundle by its SHA-256', () => {
    const bytes = bundleOf();
    const b = readBundle(bytes);
    expect(b.hash).toBe(bundleHash(bytes));
    expect(b.hash).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(b.manifest.name).toBe('demo');
    expect(b.files.map((f) => f.path)).toEqual(['assets/model.bin', 'client.js', 'server.js']);
    expect(Buffer.from(b.files[1]!.data).toString()).toBe('export default 1;\n');
  });

  it.each([
    ['../evil.js', /Unsafe file name/],
    ['/etc/passwd', /Unsafe file name/],
    ['a/../../b', /Unsafe file name/],
    ['./client.js', /Unsafe file name/],
    ['a\\b', /Unsafe file name/],
  ])('refuses the path %s', (name, message) => {
    expectInvalid(() => readBundle(withManifest(FILES, [rawEntry(name, enc('x'))])), message);
  });

  it('refuses duplicates, unsorted entries, links, odd modes and trailing data', () => {
    const [client, server] = FILES as [BundleFile, BundleFile];
    const manifest = rawEntry(MANIFEST_FILE, manifestBytes(manifestFor([client, server])));
    expectInvalid(
      () =>
        readBundle(
          rawTar([manifest, rawEntry('client.js', client.data), rawEntry('client.js', client.data)]),
        ),
      /duplicate or out of order/,
    );
    expectInvalid(
      () =>
        readBundle(
          rawTar([manifest, rawEntry('server.js', server.data), rawEntry('client.js', client.data)]),
        ),
      /duplicate or out of order/,
    );
    expectInvalid(
      () =>
        readBundle(
          rawTar([
            manifest,
            rawEntry('client.js', enc(''), { type: '2' }),
            rawEntry('server.js', server.data),
          ]),
        ),
      /only regular files/,
    );
    expectInvalid(
      () =>
        readBundle(
          rawTar([
            manifest,
            rawEntry('client.js', client.data, { mode: 0o755 }),
            rawEntry('server.js', server.data),
          ]),
        ),
      /only regular files/,
    );
    expectInvalid(() => readBundle(Buffer.concat([bundleOf(), Buffer.alloc(512, 1)])), /after its end|ustar/);
  });

  it('refuses files that do not match the manifest, and a missing or bad manifest', () => {
    const tampered = FILES.map((f) =>
      f.path === 'client.js' ? { ...f, data: enc('export default 666;\n') } : f,
    );
    expectInvalid(() => readBundle(bundleOf(tampered, manifestFor(FILES))), /client\.js does not match/);
    expectInvalid(
      () => readBundle(bundleOf([...FILES, { path: 'extra.js', data: enc('') }], manifestFor(FILES))),
      /exactly the files/,
    );
    expectInvalid(() => readBundle(writeTar(FILES)), /does not start with pollen\.json/);
    expectInvalid(
      () => readBundle(bundleOf(FILES, manifestFor(FILES, { serverapp: 'main.js' }))),
      /entry file main\.js/,
    );
    const loose = Buffer.from(JSON.stringify(manifestFor(FILES)));
    expectInvalid(
      () => readBundle(writeTar([{ path: MANIFEST_FILE, data: loose }, ...FILES])),
      /canonical form/,
    );
  });

  it('refuses an oversize bundle before reading it', () => {
    expectInvalid(() => readBundle({ byteLength: MAX_BUNDLE_BYTES + 1 } as Uint8Array), /larger than/);
  });
});

describe('extractBundle', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('unpacks into CACHE/<hex>/ and reuses the folder for the same hash', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'pollen-cache-'));
    dirs.push(cache);
    const bytes = bundleOf();
    const first = await extractBundle(bytes, cache);
    expect(first.dir).toBe(join(cache, bundleHash(bytes).slice(7)));
    expect(first.clientappPath).toBe(join(first.dir, 'client.js'));
    expect(readFileSync(join(first.dir, 'assets/model.bin'))).toHaveLength(700);
    expect(readFileSync(join(first.dir, MANIFEST_FILE), 'utf8')).toContain('"name": "demo"');
    const again = await extractBundle(bytes, cache);
    expect(again).toEqual(first);
    // No temporary folder is left behind.
    expect(readdirSync(cache)).toEqual([first.hash.slice(7)]);
  });

  it('finds a bundle unpacked before by its hash alone, and ignores a folder that is not one', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'pollen-cache-'));
    dirs.push(cache);
    const bytes = bundleOf();
    const hash = bundleHash(bytes);
    expect(extractedBundle(hash, cache)).toBeUndefined();
    const first = await extractBundle(bytes, cache);
    expect(extractedBundle(hash, cache)).toEqual(first);
    // Not a hash, another hash, a manifest that does not parse or is not canonical: not found.
    expect(extractedBundle('sha256:../x', cache)).toBeUndefined();
    expect(extractedBundle(`sha256:${'0'.repeat(64)}`, cache)).toBeUndefined();
    const manifest = join(first.dir, MANIFEST_FILE);
    const text = readFileSync(manifest, 'utf8');
    writeFileSync(manifest, text.replace(/\n/g, ''));
    expect(extractedBundle(hash, cache)).toBeUndefined();
    writeFileSync(manifest, '{');
    expect(extractedBundle(hash, cache)).toBeUndefined();
  });

  it('writes nothing for a bundle it refuses', async () => {
    const cache = join(mkdtempSync(join(tmpdir(), 'pollen-cache-')), 'apps');
    dirs.push(cache);
    await expect(
      extractBundle(withManifest(FILES, [rawEntry('../x', enc('x'))]), cache),
    ).rejects.toMatchObject({
      code: 'BUNDLE_INVALID',
    });
    expect(existsSync(cache)).toBe(false);
  });
});
