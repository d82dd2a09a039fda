/**
 * deploy/compose/compose.yaml (`pollen deploy compose`'s sample): linted (yamllint), checked
 * against the Compose Specification's JSON schema (test/fixtures/compose-spec.json) and our own
 * rules, then its Pollen services run as written — the Certificate Service, the SuperLink and the
 * CPU sites hospital-a and hospital-b — as local processes, without a container engine.
 *
 * How they run (test/support/compose.ts): each service in its own network namespace joined to
 * the others by a bridge, as a container engine's network does, with an /etc/hosts that resolves
 * the service names; so no port is remapped (each has its own loopback for its ops listener and
 * ClientAppIo) and the certificates name the hosts the file names. Volumes and secrets are
 * folders of a temporary project folder; the image's paths (/opt/pollen, /opt/venv) are this
 * repository and Debian's Python. Each runs as the image's user (uid 10001, setpriv), its new
 * volumes owned as a container engine makes them. `tini --` (the images' PID 1) is left out.
 * What is not run here: the rest of the container runtime's settings (read-only root,
 * capabilities, GPU reservation) — checked as settings below — and Keycloak, PostgreSQL and the DCGM exporter,
 * whose images cannot be pulled here; the GPU site hospital-c runs the CPU sites' command.
 *
 * test/fixtures/compose-spec.json is the Compose Specification's schema/compose-spec.json
 * (github.com/compose-spec/compose-spec, commit 170098ba07d9f53c383a41bfd4c5166b0a4529a6).
 */
import { type ChildProcess, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import * as z from 'zod';
import { composeProject } from '../src/deploy/compose.js';
import { ensureBuilt, POLLEN_BIN, pollenInProcess, tempDir } from './support/cli.js';
import { type ComposeFile, serviceProcess } from './support/compose.js';
import { type NetnsLab, netnsLab } from './support/netns.js';

const ROOT = join(import.meta.dirname, '..');
const COMPOSE_DIR = join(ROOT, 'deploy/compose');
const text = readFileSync(join(COMPOSE_DIR, 'compose.yaml'), 'utf8');
const file = parse(text) as ComposeFile;
const POLLEN_SERVICES = ['cert-service', 'superlink', 'hospital-a', 'hospital-b', 'hospital-c'];
const RUN = ['cert-service', 'superlink', 'hospital-a', 'hospital-b'];

describe('deploy/compose/compose.yaml', () => {
  it('passes yamllint and the Compose Specification schema', () => {
    const lint = spawnSync(
      'yamllint',
      [
        '-d',
        '{extends: default, rules: {document-start: disable, line-length: {max: 100}}}',
        '-f',
        'parsable',
        join(COMPOSE_DIR, 'compose.yaml'),
      ],
      { encoding: 'utf8' },
    );
    expect(lint.stdout).toBe('');
    expect(lint.status).toBe(0);
    const spec = z.fromJSONSchema(
      JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures/compose-spec.json'), 'utf8')),
      { defaultTarget: 'draft-7' },
    );
    expect(spec.safeParse(file).error?.issues).toBeUndefined();
    // The schema is strict: a misspelt key or a wrong type is caught.
    const bad = structuredClone(file) as unknown as { services: Record<string, Record<string, unknown>> };
    bad.services['superlink']!['readonly'] = true;
    bad.services['cert-service']!['healthcheck'] = { test: 5 };
    const issues = spec.safeParse(bad).error?.issues.map((i) => i.path.join('.')) ?? [];
    expect(issues.join('\n')).toMatch(/services\.superlink/);
    expect(issues.join('\n')).toMatch(/services\.cert-service\.healthcheck\.test/);
  });

  it('names only declared volumes, secrets, services and Dockerfiles that exist', () => {
    for (const [name, s] of Object.entries(file.services)) {
      for (const v of s.volumes ?? []) {
        const source = v.split(':')[0]!;
        // ./ca and ./secrets are the operator's; ../ names a file of this repository.
        if (source.startsWith('../')) expect(existsSync(join(COMPOSE_DIR, source)), v).toBe(true);
        else if (!source.startsWith('./'))
          expect(Object.keys(file.volumes ?? {}), `${name}: ${v}`).toContain(source);
      }
      for (const secret of s.secrets ?? []) expect(Object.keys(file.secrets ?? {}), name).toContain(secret);
      for (const d of Object.keys((s['depends_on'] as object | undefined) ?? {}))
        expect(Object.keys(file.services), name).toContain(d);
      if (s.build)
        expect(existsSync(join(COMPOSE_DIR, s.build.context, s.build.dockerfile)), name).toBe(true);
    }
    // The realm Keycloak imports is the repository's (deploy/keycloak/realm.json).
    expect(file.services['keycloak']!.volumes).toEqual([
      '../keycloak/realm.json:/opt/keycloak/data/import/realm.json:ro',
    ]);
  });

  it('runs every Pollen service as pollen, read-only, without capabilities, healthy by pollen ready', () => {
    const probe = { 'cert-service': 9097, superlink: 9095, 'hospital-a': 9096, 'hospital-c': 9096 } as const;
    for (const name of POLLEN_SERVICES) {
      const s = file.services[name]!;
      expect(s).toMatchObject({
        user: 'pollen',
        read_only: true,
        tmpfs: ['/tmp'],
        cap_drop: ['ALL'],
        security_opt: ['no-new-privileges:true'],
      });
      expect(s.image).toMatch(/^myorg\/pollen-[a-z-]+:0\.1\.0$/);
      expect(s.build?.dockerfile).toMatch(/^deploy\/docker\/Dockerfile\./);
      const port = probe[name as keyof typeof probe];
      if (port)
        expect(s.healthcheck?.test).toEqual([
          'CMD',
          'pollen',
          'ready',
          `127.0.0.1:${port}`,
          '--timeout',
          '5',
        ]);
      // Secrets are files, never environment values.
      expect(JSON.stringify(s['environment'] ?? {})).not.toMatch(/TOKEN|API_KEY|PASSWORD/);
    }
    expect(file.services['hospital-c']!['deploy']).toEqual({
      resources: { reservations: { devices: [{ driver: 'nvidia', count: 1, capabilities: ['gpu'] }] } },
    });
    expect(file.services['hospital-c']!.build?.dockerfile).toBe('deploy/docker/Dockerfile.supernode-gpu');
    // The GPU site starts exactly as a CPU site does (the run below covers it), under its own name.
    expect(file.services['hospital-c']!.entrypoint!.join(' ').replaceAll('hospital-c', 'hospital-a')).toBe(
      file.services['hospital-a']!.entrypoint!.join(' '),
    );
    expect(file.services['hospital-c-dcgm-exporter']!.image).toMatch(
      /^nvcr\.io\/nvidia\/k8s\/dcgm-exporter:\d+\.\d+\.\d+-\d+\.\d+\.\d+-ubuntu22\.04$/,
    );
    expect(file.services['keycloak']!.entrypoint!.join(' ')).toContain('kc.sh start --import-realm');
    expect(file.services['keycloak-db']!['environment']).toMatchObject({
      POSTGRES_PASSWORD_FILE: '/run/secrets/keycloak_db_password',
    });
  });

  it('is what pollen deploy compose generates from its options (no hand edits)', () => {
    const generated = composeProject({
      sites: ['hospital-a', 'hospital-b'],
      gpuSites: ['hospital-c'],
      imagePrefix: 'myorg/pollen-',
      tag: '0.1.0',
      buildContext: '../..',
      certServiceHosts: ['certs.example.org'],
      superlinkHosts: ['superlink.example.org'],
      keycloakUrl: 'https://id.example.org',
      realmFile: '../keycloak/realm.json',
      identityFile: '../keycloak/identity.toml',
    });
    expect(file).toEqual(JSON.parse(JSON.stringify(generated)));
  });
});

describe('pollen deploy compose', () => {
  it('writes compose.yaml and says what goes beside it; without Keycloak, no Keycloak service or secret', async () => {
    const tmp = tempDir('pollen-compose-cli-');
    try {
      const out = join(tmp.dir, 'fed');
      const r = await pollenInProcess([
        'deploy',
        'compose',
        '--site',
        'lab-1',
        '--no-keycloak',
        '-o',
        out,
        '--json',
      ]);
      expect(r.code, r.stderr).toBe(0);
      const doc = r.json<{ generator: string; files: { path: string }[]; notes: string[] }>();
      expect(doc.files.map((f) => f.path)).toEqual(['compose.yaml']);
      expect(doc.notes.join('\n')).toContain('./secrets/{superlink,lab-1}.token');
      const written = parse(readFileSync(join(out, 'compose.yaml'), 'utf8')) as ComposeFile;
      expect(Object.keys(written.services)).toEqual(['cert-service', 'superlink', 'lab-1']);
      expect(Object.keys(written.secrets!)).toEqual(['api_key', 'superlink_token', 'lab-1_token']);
      // Without --build-context the images are pulled, never built.
      expect(written.services['lab-1']!.build).toBeUndefined();
      const again = await pollenInProcess(['deploy', 'compose', '--site', 'lab-1', '-o', out, '--json']);
      expect(again.json<{ error: { code: string } }>().error.code).toBe('FILE_EXISTS');
    } finally {
      tmp.cleanup();
    }
  });

  it('refuses bad input with a code and a hint', async () => {
    const cases: [string[], string, RegExp][] = [
      [[], 'USAGE', /at least one site/],
      [['--site', 'Hospital A'], 'INVALID_ARGUMENT', /cannot name a compose service/],
      [['--site', 'superlink'], 'INVALID_ARGUMENT', /taken by the file's own services/],
      [['--site', 'a', '--gpu-site', 'a'], 'INVALID_ARGUMENT', /named twice/],
      [['--site', 'a', '--keycloak-url', 'http://id.example.org'], 'INVALID_ARGUMENT', /not an https origin/],
      [['--site', 'a', '--keycloak-url', 'https://id.example.org', '--no-keycloak'], 'USAGE', /contradict/],
    ];
    for (const [flags, code, message] of cases) {
      const r = await pollenInProcess(['deploy', 'compose', ...flags, '-o', '/nonexistent/never', '--json']);
      expect(r.code, flags.join(' ')).not.toBe(0);
      const doc = r.json<{ error: { code: string; message: string; hint: string } }>();
      expect(doc.error.code, flags.join(' ')).toBe(code);
      expect(doc.error.message).toMatch(message);
      expect(doc.error.hint).toBeTruthy();
    }
  });
});

describe('the Pollen services of compose.yaml run as written (local processes, one network namespace each; Keycloak, PostgreSQL and the DCGM exporter are not run)', () => {
  const project = tempDir('pollen-compose-');
  const root = project.dir;
  let lab: NetnsLab;
  const started = new Map<string, ChildProcess>();
  const logs = new Map<string, string>();
  const binDir = join(root, 'bin');
  const PATH = `${binDir}:${process.env['PATH']}`;

  beforeAll(async () => {
    ensureBuilt('cli/main.js');
    // The operator's steps before `docker compose up` (docs/deployment.md): the CA, the API key,
    // a token per participant.
    const cli = async (args: string[]) => {
      const r = await pollenInProcess(args);
      if (r.code !== 0) throw new Error(`pollen ${args.join(' ')}: ${r.stderr}`);
    };
    await cli(['cert', 'init', '-n', 'Compose test', '-o', join(root, 'ca')]);
    await cli(['cert', 'api-key', '-o', join(root, 'secrets/api_key.txt')]);
    await cli([
      'token',
      'generate',
      '-s',
      'superlink',
      '--server',
      '--host',
      'superlink',
      '--host',
      'superlink.example.org',
      '-c',
      join(root, 'ca'),
      '-o',
      join(root, 'secrets/superlink.token'),
    ]);
    await cli([
      'token',
      'batch',
      '--names',
      'hospital-a',
      'hospital-b',
      '-c',
      join(root, 'ca'),
      '-o',
      join(root, 'secrets/'),
    ]);
    // The files' owner is the images' user pollen (uid 10001), as docs/deployment.md says.
    chmodSync(root, 0o755);
    for (const folder of ['ca', 'secrets'])
      for (const f of ['', ...readdirSync(join(root, folder), { recursive: true, encoding: 'utf8' })])
        chownSync(join(root, folder, f), 10001, 10001);
    // `pollen` on PATH, as the images link it.
    mkdirSync(binDir, { recursive: true });
    writeFileSync(join(binDir, 'pollen'), `#!/bin/sh\nexec "${process.execPath}" "${POLLEN_BIN}" "$@"\n`);
    chmodSync(join(binDir, 'pollen'), 0o755);
    lab = netnsLab('pc', ['net', ...RUN]);
    const addresses = Object.fromEntries(RUN.map((s, i) => [s, `10.89.0.${i + 2}`]));
    lab.bridge('net', Object.fromEntries(RUN.map((s) => [s, `${addresses[s]}/24`])));
    // Each service answers to its name and its network aliases, as on the compose network.
    const names = (s: string) => [
      s,
      ...(((file.services[s]!['networks'] as { default?: { aliases?: string[] } } | undefined)?.default
        ?.aliases ?? []) as string[]),
    ];
    const hosts = [
      '127.0.0.1 localhost',
      ...RUN.map((s) => `${addresses[s]} ${names(s).join(' ')}`),
      '',
    ].join('\n');
    for (const s of RUN) lab.hosts(s, hosts);
  }, 60_000);

  afterAll(() => {
    lab?.cleanup();
    project.cleanup();
  });

  const asUser = (uid: number) => ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups'];

  /** Start a service as its file says, in its namespace. */
  function up(name: string): ChildProcess {
    const p = serviceProcess(file, name, root, COMPOSE_DIR);
    expect(p.argv.slice(0, 2), `${name} runs under tini`).toEqual(['tini', '--']);
    // A new volume is an empty folder, with the owner a container engine gives it.
    for (const v of p.volumes)
      if (!existsSync(v.path)) {
        mkdirSync(v.path, { recursive: true });
        chownSync(v.path, v.uid, v.uid);
      }
    // As the image's user (`user: pollen`), never root.
    const child = lab.start(name, [...asUser(p.uid), 'env', '-C', p.cwd, ...p.argv.slice(2)], {
      ...p.env,
      PATH,
      HOME: p.cwd,
    });
    logs.set(name, '');
    const append = (d: Buffer) => logs.set(name, logs.get(name) + String(d));
    child.stdout?.on('data', append);
    child.stderr?.on('data', append);
    started.set(name, child);
    return child;
  }

  /** The service's healthcheck, as written, until it passes (compose's `service_healthy`). */
  async function healthy(name: string, timeoutMs = 40_000): Promise<void> {
    const test = file.services[name]!.healthcheck!.test;
    expect(test[0]).toBe('CMD');
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const uid = serviceProcess(file, name, root, COMPOSE_DIR).uid;
      const r = spawnSync('ip', ['netns', 'exec', lab.ns(name), ...asUser(uid), ...test.slice(1)], {
        env: { ...process.env, PATH },
        encoding: 'utf8',
      });
      if (r.status === 0) return;
      const child = started.get(name)!;
      if (child.exitCode !== null || Date.now() > deadline)
        throw new Error(
          `${name} is not healthy (exit ${child.exitCode}): ${r.stdout}${r.stderr}\n${logs.get(name)}`,
        );
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  /** Connected: the SuperNode says so in its log, and its own gauge (read inside its namespace) agrees. */
  async function connected(site: string): Promise<void> {
    const line = new RegExp(`SuperNode ${site} connected as node [0-9a-f]+ to superlink:9092`);
    const deadline = Date.now() + 30_000;
    while (!line.test(logs.get(site)!)) {
      if (Date.now() > deadline) throw new Error(`${site} never connected:\n${logs.get(site)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const metrics = lab.run(site, [
      process.execPath,
      '-e',
      "fetch('http://127.0.0.1:9096/metrics').then(r => r.text()).then(t => process.stdout.write(t))",
    ]);
    expect(metrics).toMatch(/^pollen_supernode_connected{[^}]*} 1$/m);
  }

  it('the Certificate Service, then the SuperLink enrolled from its token, then two sites that enroll and connect', async () => {
    up('cert-service');
    await healthy('cert-service');
    up('superlink');
    await healthy('superlink');
    // Written by the image's user into its volume.
    expect(statSync(join(root, 'volumes/superlink/kit/startup/superlink.crt')).uid).toBe(10001);
    // The single-use token was spent and left the kit.
    expect(existsSync(join(root, 'volumes/superlink/kit/startup/enrollment_token'))).toBe(false);
    up('hospital-a');
    up('hospital-b');
    await Promise.all([healthy('hospital-a'), healthy('hospital-b')]);
    for (const site of ['hospital-a', 'hospital-b']) {
      expect(existsSync(join(root, `volumes/${site}/kit/startup/${site}.crt`)), site).toBe(true);
      await connected(site);
    }
    // A restart finds its kit and goes straight to `pollen start`: the token, spent, is not asked again.
    const first = started.get('hospital-a')!;
    const exited = new Promise((resolve) => first.on('exit', resolve));
    process.kill(-first.pid!, 'SIGTERM');
    await exited;
    up('hospital-a');
    await connected('hospital-a');
    expect(logs.get('hospital-a')).not.toMatch(/Startup kit for client/);
  }, 120_000);
});
