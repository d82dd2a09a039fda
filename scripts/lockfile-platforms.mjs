#!/usr/bin/env node
// Keeps package-lock.json installable with `npm ci` on machines whose registry serves only the
// current platform's binary packages (@biomejs/cli-*, @rollup/rollup-*). npm then leaves the
// other platforms' optional packages out of the lock, and `npm ci` refuses the lock as out of
// sync (npm/cli#9846). This adds a lock entry, with the platform fields npm uses to skip it, for
// each such optional dependency. Run after `npm install` changes the lock.
import { readFileSync, writeFileSync } from 'node:fs';

const OS = [
  'android',
  'darwin',
  'freebsd',
  'linux',
  'openbsd',
  'netbsd',
  'sunos',
  'win32',
  'aix',
  'openharmony',
];
const CPU = ['arm64', 'x64', 'ia32', 'arm', 'loong64', 'ppc64', 'riscv64', 's390x', 'mips64el'];
/** Other spellings packages use in their names (e.g. @bufbuild/buf-linux-aarch64, -armv7). */
const CPU_ALIASES = { aarch64: 'arm64', armv7: 'arm', amd64: 'x64' };

/** os/cpu/libc from a platform package name like `cli-linux-arm64-musl` or `rollup-linux-arm-gnueabihf`. */
function platformOf(name) {
  const parts = name.split('/').pop().split('-');
  const os = parts.find((p) => OS.includes(p));
  const cpu = parts.map((p) => CPU_ALIASES[p] ?? p).find((p) => CPU.includes(p));
  if (!os || !cpu) return undefined;
  const entry = { os: [os], cpu: [cpu] };
  if (os === 'linux')
    entry.libc = [parts.includes('musl') || parts.includes('musleabihf') ? 'musl' : 'glibc'];
  return entry;
}

const path = process.argv[2] ?? 'package-lock.json';
const lock = JSON.parse(readFileSync(path, 'utf8'));
let added = 0;
for (const [key, pkg] of Object.entries(lock.packages)) {
  for (const [dep, version] of Object.entries(pkg.optionalDependencies ?? {})) {
    const depKey = `node_modules/${dep}`;
    if (lock.packages[depKey] || !/^\d+\.\d+\.\d+/.test(version)) continue;
    const platform = platformOf(dep);
    if (!platform) continue;
    lock.packages[depKey] = {
      version,
      ...platform,
      ...(pkg.dev ? { dev: true } : {}),
      optional: true,
      ...(pkg.license ? { license: pkg.license } : {}),
    };
    added++;
    void key;
  }
}
const sorted = Object.fromEntries(
  Object.entries(lock.packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a.localeCompare(b))),
);
lock.packages = sorted;
writeFileSync(path, `${JSON.stringify(lock, null, 2)}\n`);
process.stderr.write(`lockfile-platforms: added ${added} platform entries to ${path}\n`);
