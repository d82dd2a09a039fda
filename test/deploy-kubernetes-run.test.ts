/**
 * The SuperNode StatefulSet's commands, exactly as deploy/kubernetes/overlays/hospital-a renders
 * them (command, args, env, working folder), run as local processes against a real Certificate
 * Service and SuperLink on 127.0.0.1: what a pod would do, with folders in place of its volumes, a fake HOSTNAME
 * giving the ordinal, and the addresses moved to loopback. Tokens come from `pollen token batch`
 * as the manual makes them. Replicas 1 and 2 enroll as different sites with their own tokens; a
 * replica without a token stops with TOKEN_MISSING; a restarted replica needs no token; the main
 * container connects to the SuperLink and answers the probes' paths.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEPLOY_DIR } from '../scripts/gen-deploy-samples.js';
import type { SuperLink } from '../src/superlink/superlink.js';
import { type LiveCertService, startLiveCertService, testPolicy } from './support/cert-service.js';
import { ensureBuilt, POLLEN_BIN, pollen, tempDir } from './support/cli.js';
import { cliEnv } from './support/federation.js';
import { kustomize } from './support/kustomize.js';
import { freePort } from './support/nginx.js';
import { tlsSuperLink } from './support/tls-superlink.js';

const ORG = 'hospital-a';
const t = tempDir('pollen-k8s-run-');
let cs: LiveCertService;
let superlink: SuperLink;
const tokens = join(t.dir, 'tokens');
const bin = join(t.dir, 'bin');

// The StatefulSet as the overlay renders it.
const [statefulSet] = kustomize(join(DEPLOY_DIR, 'kubernetes/overlays', ORG)).filter(
  (o) => o.kind === 'StatefulSet',
);
const pod = statefulSet!.spec.template.spec;
type Container = {
  command: string[];
  args: string[];
  env: { name: string; value: string }[];
  workingDir?: string;
  volumeMounts: { name: string; mountPath: string }[];
  livenessProbe?: { httpGet: { path: string } };
  readinessProbe?: { httpGet: { path: string } };
};
const enroll: Container = pod.initContainers[0];
const main: Container = pod.containers[0];

beforeAll(async () => {
  ensureBuilt('cli/main.js');
  cs = await startLiveCertService(t.dir, {
    name: 'Kubernetes Run',
    keyType: 'ec-p256',
    apiKey: 'pollen_test_admin_key_k8s_run_0123456789abcdef',
    policy: testPolicy('k8s-run', ['{ name: "everyone", match: {}, action: approve }']),
    hostnames: ['127.0.0.1'],
  });
  // The SuperLink, its certificate from the same CA (what the cloud overlay runs).
  ({ superlink } = await tlsSuperLink(
    t.dir,
    'kubernetes-run',
    // The project the CA "Kubernetes Run" names in its certificates.
    { project: 'kubernetes-run', log: pino({ level: 'silent' }) },
    cs.caDir,
  ));
  // The image's `pollen` on PATH.
  mkdirSync(bin);
  symlinkSync(POLLEN_BIN, join(bin, 'pollen'));
  // Two tokens, as docs/deployment.md makes them for a StatefulSet of two replicas.
  const made = pollen(
    [
      'token',
      'batch',
      '-n',
      '2',
      '--prefix',
      ORG,
      '--org',
      ORG,
      '-c',
      cs.caDir,
      '-p',
      cs.policyFile,
      '-o',
      `${tokens}/`,
    ],
    { env: cliEnv() },
  );
  expect(made.code, made.stderr).toBe(0);
}, 120_000);

afterAll(async () => {
  await superlink?.close();
  await cs?.close();
  t.cleanup();
});

/**
 * The container's environment with its volumes as folders of replica `ordinal` (a value under a
 * mount path moves under the folder) and its addresses on loopback, plus the pod's HOSTNAME.
 */
function localEnv(
  c: Container,
  hostname: string,
  folders: Record<string, string>,
  more: Record<string, string>,
) {
  const mountOf = Object.fromEntries(c.volumeMounts.map((m) => [m.mountPath, folders[m.name]!]));
  const local = (value: string) => {
    for (const [path, folder] of Object.entries(mountOf))
      if (value === path || value.startsWith(`${path}/`)) return folder + value.slice(path.length);
    return value;
  };
  const env: Record<string, string> = {};
  for (const { name, value } of c.env) env[name] = local(value);
  return {
    cwd: c.workingDir ? local(c.workingDir) : undefined,
    env: cliEnv({ ...env, HOSTNAME: hostname, PATH: `${bin}:${process.env.PATH}`, ...more }),
  };
}

/** The folders standing in for a replica's volumes: its own state (its PVC), the tokens, /tmp. */
function volumesOf(ordinal: number, tokenFolder = tokens) {
  const state = join(t.dir, `state-${ordinal}`);
  const tmp = join(t.dir, `tmp-${ordinal}`);
  mkdirSync(state, { recursive: true });
  mkdirSync(tmp, { recursive: true });
  return { state, tokens: tokenFolder, tmp };
}

function run(
  c: Container,
  ordinal: number,
  o: { hostname?: string; tokens?: string; env?: Record<string, string> } = {},
) {
  const { cwd, env } = localEnv(c, o.hostname ?? `${ORG}-${ordinal}`, volumesOf(ordinal, o.tokens), {
    FLEET_ENDPOINT: `grpcs://${new URL(superlink.fleetUrl).host}`,
    POLLEN_CERT_SERVICE_URL: cs.svc.url,
    ...o.env,
  });
  const [program, ...args] = [...c.command, ...c.args];
  return spawn(program!, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
}

function finished(child: ChildProcess): Promise<{ code: number | null; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  return new Promise((res) => child.on('close', (code) => res({ code, stdout, stderr })));
}

const certificateOf = (ordinal: number) => {
  const startup = join(t.dir, `state-${ordinal}`, 'kit', 'startup');
  return new X509Certificate(readFileSync(join(startup, `${ORG}-${ordinal}.crt`)));
};

describe('the SuperNode StatefulSet, run as local processes', () => {
  it('replicas 1 and 2 enroll as their own sites, each with its own token', async () => {
    const [one, two] = await Promise.all([finished(run(enroll, 1)), finished(run(enroll, 2))]);
    expect(one.code, one.stderr).toBe(0);
    expect(two.code, two.stderr).toBe(0);
    expect(certificateOf(1).subject).toContain(`CN=${ORG}-1`);
    expect(certificateOf(2).subject).toContain(`CN=${ORG}-2`);
    expect(certificateOf(1).subject).toContain(`O=${ORG}`);
    expect(certificateOf(1).serialNumber).not.toBe(certificateOf(2).serialNumber);
    // Each single-use token is spent: the kit's copy is gone.
    expect(existsSync(join(t.dir, 'state-1/kit/startup/enrollment_token'))).toBe(false);
  });

  it('a replica without a token stops with TOKEN_MISSING and what to do, and makes no kit', async () => {
    const three = await finished(run(enroll, 3));
    expect(three.code).toBe(5);
    expect(three.stderr).toContain(
      `error[TOKEN_MISSING]: no enrollment token for ${ORG}-3: the Secret pollen-tokens-${ORG} has no key ${ORG}-3.token`,
    );
    expect(three.stderr).toContain(
      `hint: the Secret holds one token per replica: make them with pollen token batch`,
    );
    expect(readdirSync(join(t.dir, 'state-3'))).toEqual([]);
  });

  it('a pod whose host name has no ordinal is refused', async () => {
    const r = await finished(run(enroll, 4, { hostname: ORG }));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      `error[INVALID_ARGUMENT]: the host name ${ORG} does not end in a StatefulSet ordinal`,
    );
  });

  it('a restarted replica keeps its kit and needs no token', async () => {
    const empty = join(t.dir, 'no-tokens');
    mkdirSync(empty);
    const again = await finished(run(enroll, 1, { tokens: empty }));
    expect(again.code, again.stderr).toBe(0);
    expect(certificateOf(1).subject).toContain(`CN=${ORG}-1`);
  });

  it('the main container starts the enrolled SuperNode, which connects to the SuperLink and answers the probes', async () => {
    const port = await freePort();
    const child = run(main, 1, { env: { POLLEN_METRICS_ADDRESS: `127.0.0.1:${port}` } });
    const done = finished(child);
    try {
      for (const probe of [main.readinessProbe!, main.livenessProbe!])
        await expect
          .poll(
            () =>
              fetch(`http://127.0.0.1:${port}${probe.httpGet.path}`).then(
                (r) => r.status,
                () => 0,
              ),
            { timeout: 20_000, interval: 100 },
          )
          .toBe(200);
      await expect
        .poll(() => fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text()), {
          timeout: 20_000,
          interval: 200,
        })
        .toMatch(/^pollen_supernode_connected{[^}]*} 1$/m);
    } finally {
      child.kill('SIGTERM');
    }
    const r = await done;
    expect(r.stderr).not.toContain('error[');
  });
});
