/**
 * One image of deploy/docker built and started for real: the Certificate Service's (Node.js and
 * Pollen, no Python, so the cheapest to build), from its Dockerfile as written, with podman and a
 * locally made base (scripts/build-images.sh), then run as the manual runs it: read-only root, a
 * tmpfs on /tmp, no capabilities, no network, until its HEALTHCHECK (`pollen ready`) passes.
 *
 * The script's caches are machine-wide, in /var/cache/pollen-images, shared by every clone: the
 * Debian base and .deb files, and podman's storage with its layer cache. The first run on a
 * machine fetches a minimal Debian from the mirror; later ones redo only the steps whose inputs
 * changed (the build stage's `npm ci` and `tsc` when the sources did). Needs root, podman,
 * mmdebstrap and dpkg-dev (test/system-deps.test.ts lists them).
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execForm, parseDockerfile } from './support/dockerfile.js';

const ROOT = resolve(import.meta.dirname, '..');
const VERSION = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version as string;
const CACHE = '/var/cache/pollen-images';
const STORE = ['--root', join(CACHE, 'store/root'), '--runroot', join(CACHE, 'store/run')];
const IMAGE = `localhost/pollen-cert-service:${VERSION}`;

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Asynchronous, so the test worker keeps answering vitest during a build of minutes. */
async function run(file: string, args: string[]): Promise<Ran> {
  try {
    const { stdout, stderr } = await promisify(execFile)(file, args, { maxBuffer: 64 << 20 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const f = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof f.code === 'number' ? f.code : 1, stdout: f.stdout ?? '', stderr: f.stderr ?? '' };
  }
}

const podman = (args: string[]) => run('/usr/bin/podman', [...STORE, ...args]);

let built: Ran;
beforeAll(async () => {
  built = await run(join(ROOT, 'scripts/build-images.sh'), [
    ...['--work', join(CACHE, 'work'), '--store', join(CACHE, 'store')],
    ...['--check', 'cert-service'],
  ]);
}, 900_000);
// Each change of the sources leaves the previous build's layers behind, unnamed: those of the
// last day stay as the layer cache (a clone at another commit reuses them), older ones go.
afterAll(async () => {
  const pruned = await podman(['image', 'prune', '--force', '--filter', 'until=24h']);
  expect(pruned.code, pruned.stderr).toBe(0);
});

/** The last instruction KEYWORD of the Dockerfile, as written. */
const last = (keyword: string) =>
  parseDockerfile(readFileSync(join(ROOT, 'deploy/docker/Dockerfile.cert-service'), 'utf8'))
    .filter((i) => i.keyword === keyword)
    .at(-1)!.args;

describe('the Certificate Service image, built and started with podman', () => {
  it('builds from its Dockerfile as written and turns healthy with a read-only root, no capabilities and no network', () => {
    expect(built.code, built.stderr).toBe(0);
    const version = VERSION.replaceAll('.', '\\.');
    expect(built.stdout).toMatch(new RegExp(`^${IMAGE}: healthy after \\d+ s \\(${version}\\)$`, 'm'));
  });

  it('its HEALTHCHECK fails while nothing answers, and without its API key it refuses to start', () => {
    expect(built.stdout).toContain(
      `${IMAGE}: HEALTHCHECK fails where the service does not run (UNAVAILABLE)\n`,
    );
    expect(built.stdout).toContain(`${IMAGE}: refuses to start without its API key (FILE_NOT_FOUND)\n`);
    // The failure paths come before the start that passes.
    expect(built.stdout.indexOf('refuses to start')).toBeLessThan(built.stdout.indexOf('healthy after'));
  });

  it("carries its Dockerfile's user, entrypoint and HEALTHCHECK (the docker format keeps the health check)", async () => {
    const inspected = await podman(['image', 'inspect', IMAGE]);
    expect(inspected.code, inspected.stderr).toBe(0);
    const [image] = JSON.parse(inspected.stdout) as [
      {
        Config: { User: string; Entrypoint: string[] };
        Healthcheck: { Test: string[]; Interval: number; Timeout: number; Retries: number };
      },
    ];
    expect(image.Config.User).toBe(last('USER'));
    expect(image.Config.Entrypoint).toEqual(execForm(last('ENTRYPOINT')));
    const healthcheck = last('HEALTHCHECK');
    expect(image.Healthcheck).toEqual({
      Test: ['CMD', ...execForm(healthcheck.slice(healthcheck.indexOf('CMD') + 3).trim())!],
      Interval: 30e9,
      Timeout: 10e9,
      StartPeriod: 30e9,
      Retries: 3,
    });
    expect(healthcheck).toMatch(/^--interval=30s --timeout=10s --start-period=30s --retries=3 +CMD /);
  });
});
