/**
 * What a login token costs the Control API: ListRuns (50 runs) over TLS on 127.0.0.1 by a caller
 * with an access token (Keycloak-shaped, verified by the real TokenVerifier against a test issuer)
 * beside the same call by an admin certificate, alternating in batches in one run. CPU is this
 * process's (server and client in one process: the client's share is the same for both, so the
 * difference is the server's identity work, measured against the whole call).
 *
 *   npx tsx bench/control-identity.ts                 ~10 s
 *   npx tsx bench/control-identity.ts --seconds 1     per batch kind and round
 *   … --json                                          one JSON document on stdout
 *
 * Not part of the test suite.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Client, Interceptor } from '@connectrpc/connect';
import pino from 'pino';
import { Control } from '../src/gen/pollen/v1/control_pb.js';
import { parseOidcConfig } from '../src/identity/oidc-config.js';
import { createTokenVerifier } from '../src/identity/token-verifier.js';
import { createSiteCertificate } from '../src/pki/site.js';
import { openChannel, type RpcChannel } from '../src/transport/rpc-client.js';
import { loadTlsMaterial } from '../src/transport/tls.js';
import { startTestIssuer } from '../test/support/test-issuer.js';
import { tlsSuperLink } from '../test/support/tls-superlink.js';
import { machineInfo } from './lib/env.js';
import { round } from './lib/stats.js';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '4' },
    json: { type: 'boolean', default: false },
  },
});
const SECONDS = Number(args.seconds);
const ROUNDS = Number(args.rounds);

const bearer =
  (token: string): Interceptor =>
  (next) =>
  (req) => {
    req.header.set('authorization', `Bearer ${token}`);
    return next(req);
  };

/** CPU µs per call of `op`, one call at a time for `SECONDS`, after a warm-up. */
async function cpuPerCall(op: () => Promise<unknown>): Promise<{ cpuMicros: number; count: number }> {
  for (let i = 0; i < 20; i++) await op();
  const cpu0 = process.cpuUsage();
  const deadline = process.hrtime.bigint() + BigInt(Math.round(SECONDS * 1e9));
  let count = 0;
  while (process.hrtime.bigint() < deadline) {
    await op();
    count++;
  }
  const cpu = process.cpuUsage(cpu0);
  return { cpuMicros: (cpu.user + cpu.system) / count, count };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'pollen-bench-control-identity-'));
  const issuer = await startTestIssuer({ audience: 'pollen-superlink' });
  const oidc = parseOidcConfig({
    issuer: issuer.url,
    audience: 'pollen-superlink',
    'client-id': 'pollen-cli',
  });
  const { ca, root, superlink } = await tlsSuperLink(dir, 'bench', {
    oidc,
    tokens: createTokenVerifier(oidc),
    log: pino({ level: 'silent' }),
  });
  const channels: RpcChannel[] = [];
  try {
    for (let i = 0; i < 50; i++)
      await superlink.state.createRun({
        fabHash: `sha256:${'0'.repeat(64)}`,
        fabName: 'app',
        fabVersion: '1.0.0',
        runConfig: { lr: 0.1 },
        federation: 'default',
        createdBy: 'ada@hospital-a.org',
        createdBySubject: 'u-1',
        org: 'hospital-a',
      });
    const admin = await createSiteCertificate(ca, {
      name: 'admin@bench',
      type: 'admin',
      role: 'lead',
      org: 'hospital-a',
      outDir: join(dir, 'admin'),
      validityDays: 1,
    });
    const token = await issuer.sign(
      {
        sub: 'u-1',
        email: 'ada@hospital-a.org',
        email_verified: true,
        realm_access: { roles: ['offline_access', 'default-roles-pollen', 'lead'] },
        resource_access: { 'pollen-superlink': { roles: ['lead'] } },
        groups: ['/hospital-a'],
        org: 'hospital-a',
      },
      { ttl: 3600 },
    );
    const client = (o: { cert?: boolean; token?: string }): Client<typeof Control> => {
      const m = o.cert
        ? loadTlsMaterial({ cert: admin.certPath, key: admin.keyPath, ca: admin.rootPath })
        : undefined;
      const channel = openChannel({
        baseUrl: superlink.controlUrl,
        tls: { ca: root, ...(m && { cert: m.cert, key: m.key }) },
        interceptors: o.token ? [bearer(o.token)] : [],
      });
      channels.push(channel);
      return channel.client(Control);
    };
    const byCert = client({ cert: true });
    const byToken = client({ token });
    for (const c of [byCert, byToken])
      if ((await c.listRuns({ limit: 100 })).runs.length !== 50) throw new Error('wrong answer');
    const rows = { certificate: [] as number[], token: [] as number[] };
    // Alternating batches, so that the machine's load falls on both alike.
    for (let r = 0; r < ROUNDS; r++) {
      rows.certificate.push((await cpuPerCall(() => byCert.listRuns({ limit: 100 }))).cpuMicros);
      rows.token.push((await cpuPerCall(() => byToken.listRuns({ limit: 100 }))).cpuMicros);
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const cert = median(rows.certificate);
    const tok = median(rows.token);
    const result = {
      machine: machineInfo(),
      call: 'ListRuns (50 runs), TLS on 127.0.0.1, one call at a time',
      cpuMicrosPerCall: { certificate: round(cert, 1), token: round(tok, 1) },
      tokenOverhead: round((tok - cert) / cert, 3),
      budget: 0.1,
      rounds: {
        certificate: rows.certificate.map((x) => round(x, 1)),
        token: rows.token.map((x) => round(x, 1)),
      },
    };
    if (args.json) console.log(JSON.stringify(result));
    else {
      console.log(`ListRuns (50 runs) over TLS, CPU µs per call (median of ${ROUNDS} alternating batches):`);
      console.log(`  admin certificate  ${result.cpuMicrosPerCall.certificate}`);
      console.log(`  access token       ${result.cpuMicrosPerCall.token}`);
      console.log(
        `  token overhead     ${(result.tokenOverhead * 100).toFixed(1)}% of the call (budget ${result.budget * 100}%)`,
      );
    }
  } finally {
    for (const c of channels) c.close();
    await superlink.close();
    await issuer.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
