/**
 * What an OIDC access token costs the SuperLink per Control API call, beside the same call from
 * an admin certificate: a real `pollen superlink` process over mutual TLS on 127.0.0.1, ListRuns
 * called by three callers in alternating passes, and the server's CPU time (from /proc) per call.
 *
 * - `certificate`: an admin certificate (the identity is read once per connection);
 * - `token`: one access token reused, as `pollen` sends it until it is refreshed;
 * - `token, each new`: a new token on every call (each one checked in full: the worst case).
 *
 * The target: a token costs at most 10% more server CPU per call than a certificate.
 *
 *   npm run bench:control-identity                 5 passes of 2,000 calls per caller
 *   npx tsx bench/control-identity.ts --calls 500 --passes 3
 *   … --json                                       one JSON document on stdout
 *
 * Needs dist/ (`npm run build`). Not part of the test suite.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Interceptor } from '@connectrpc/connect';
import { Control } from '../src/gen/pollen/v1/control_pb.js';
import { initCa, loadCa } from '../src/pki/ca.js';
import { createSiteCertificate } from '../src/pki/site.js';
import { openChannel } from '../src/transport/rpc-client.js';
import { startTestIssuer } from '../test/support/test-issuer.js';
import { machineInfo } from './lib/env.js';
import { jsonDocument, processCpuMs, type Service, startService } from './lib/proc.js';
import { median, ratio, round } from './lib/stats.js';
import { num, table, times } from './lib/table.js';

const { values: args } = parseArgs({
  options: {
    calls: { type: 'string', default: '2000' },
    passes: { type: 'string', default: '5' },
    concurrency: { type: 'string', default: '8' },
    json: { type: 'boolean', default: false },
  },
});
const CALLS = Number(args.calls);
const PASSES = Number(args.passes);
const CONCURRENCY = Number(args.concurrency);
const TARGET = 1.1;

const dir = mkdtempSync(join(tmpdir(), 'pollen-bench-control-identity-'));
const say = (line: string) => (args.json ? process.stderr : process.stdout).write(`${line}\n`);

let link: Service<{ control: string }> | undefined;
try {
  await initCa({ name: 'bench', dir: join(dir, 'ca'), keyType: 'ec-p256' });
  const ca = await loadCa(join(dir, 'ca'));
  const out = join(dir, 'certs');
  await createSiteCertificate(ca, {
    outDir: out,
    validityDays: 1,
    name: 'superlink',
    type: 'server',
    hosts: ['127.0.0.1'],
  });
  await createSiteCertificate(ca, {
    outDir: out,
    validityDays: 1,
    name: 'ada@hospital-a.org',
    type: 'admin',
    role: 'project_admin',
    org: 'hospital-a',
  });
  const file = (f: string) => readFileSync(join(out, f), 'utf8');
  const issuer = await startTestIssuer({ audience: 'pollen-superlink' });
  const identity = join(dir, 'identity.toml');
  writeFileSync(
    identity,
    `[identity.oidc]\nissuer = "${issuer.url}"\naudience = "pollen-superlink"\nclient-id = "pollen-cli"\nalgorithms = ["ES256"]\n`,
  );
  const address = (flag: string) => [`--${flag}`, '127.0.0.1:0'];
  link = await startService(
    process.execPath,
    [
      'bin/pollen.js',
      'superlink',
      '--json',
      '--cert',
      join(out, 'superlink.crt'),
      '--key',
      join(out, 'superlink.key'),
      '--root-ca',
      join(out, 'rootCA.pem'),
      '--state-dir',
      join(dir, 'link'),
      ...address('fleet-address'),
      ...address('control-address'),
      ...address('serverappio-address'),
      '--identity-config',
      identity,
    ],
    { ready: jsonDocument<{ control: string }>, stderrFile: join(dir, 'superlink.log') },
  );
  const { pid } = link;
  const controlUrl = link.info.control;
  const claims = {
    sub: 'ada',
    email: 'ada@hospital-a.org',
    realm_access: { roles: ['lead'] },
    org: 'hospital-a',
  };
  const bearer =
    (token: () => string): Interceptor =>
    (next) =>
    (req) => {
      req.header.set('authorization', `Bearer ${token()}`);
      return next(req);
    };
  const client = (o: { token?: () => string; cert?: boolean }) => {
    const root = { ca: file('rootCA.pem') };
    const admin = { cert: file('ada@hospital-a.org.crt'), key: file('ada@hospital-a.org.key') };
    const channel = openChannel({
      baseUrl: controlUrl,
      tls: o.cert ? { ...root, ...admin } : root,
      interceptors: o.token ? [bearer(o.token)] : [],
    });
    return { control: channel.client(Control), close: () => channel.close() };
  };
  const reused = await issuer.sign(claims, { ttl: 3600 });
  let fresh: string[] = [];
  let next = 0;
  const callers = {
    certificate: client({ cert: true }),
    token: client({ token: () => reused }),
    'token, each new': client({ token: () => fresh[next++]! }),
  };
  type Name = keyof typeof callers;

  /** Server CPU µs per ListRuns call over `CALLS` calls, `CONCURRENCY` at a time. */
  const pass = async (name: Name): Promise<number> => {
    const { control } = callers[name];
    if (name === 'token, each new') {
      fresh = await Promise.all(
        Array.from({ length: CALLS }, (_, i) => issuer.sign({ ...claims, jti: `t${i}` })),
      );
      next = 0;
    }
    for (let i = 0; i < 20 && name !== 'token, each new'; i++) await control.listRuns({});
    const before = processCpuMs(pid)!;
    let left = CALLS;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (left-- > 0) await control.listRuns({});
      }),
    );
    return ((processCpuMs(pid)! - before) * 1000) / CALLS;
  };

  const names = Object.keys(callers) as Name[];
  // Warm every path (JIT, sessions, the issuer's keys) before measuring.
  fresh = await Promise.all(Array.from({ length: 50 }, (_, i) => issuer.sign({ ...claims, jti: `w${i}` })));
  for (const n of names) for (let i = 0; i < 50; i++) await callers[n].control.listRuns({});
  const samples = Object.fromEntries(names.map((n) => [n, [] as number[]])) as Record<Name, number[]>;
  for (let p = 0; p < PASSES; p++) {
    for (const n of p % 2 === 0 ? names : [...names].reverse()) samples[n].push(await pass(n));
    say(`pass ${p + 1}/${PASSES}: ${names.map((n) => `${n} ${num(samples[n][p], 0)} µs`).join(', ')}`);
  }
  for (const c of Object.values(callers)) c.close();
  await issuer.close();

  const cpu = Object.fromEntries(names.map((n) => [n, median(samples[n])])) as Record<Name, number>;
  const rows = names.map((n) => [n, num(cpu[n], 0), times(ratio(cpu[n], cpu.certificate))]);
  const reusedRatio = ratio(cpu.token, cpu.certificate);
  const result = {
    bench: 'control-identity',
    machine: machineInfo(),
    config: { calls: CALLS, passes: PASSES, concurrency: CONCURRENCY },
    serverCpuMicrosPerCall: Object.fromEntries(names.map((n) => [n, round(cpu[n], 0)])),
    samples,
    tokenOverCertificate: round(reusedRatio, 3),
    newTokenOverCertificate: round(ratio(cpu['token, each new'], cpu.certificate), 3),
    target: { tokenOverCertificate: TARGET, met: reusedRatio <= TARGET },
  };
  if (args.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  else {
    say(`\nListRuns, server CPU per call (median of ${PASSES} alternating passes of ${CALLS} calls):`);
    say(table(['caller', 'µs / call', '× certificate'], rows));
    say(
      `${reusedRatio <= TARGET ? 'ok' : 'FAIL'}: a token costs ${times(reusedRatio)} a certificate's server CPU (target ≤ ${times(TARGET)})`,
    );
  }
} finally {
  await link?.stop();
  rmSync(dir, { recursive: true, force: true });
}
