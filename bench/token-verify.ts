/**
 * OIDC access-token checks: the cost of `TokenVerifier.verify()` per call (warm: keys cached;
 * cold: a new verifier that discovers the issuer, fetches its keys over HTTP and imports one),
 * each beside baselines measured in the same run: jose's `jwtVerify` alone with the key already
 * imported (what any verifier must pay), and what a certificate identity costs the server
 * (`getPeerCertificate()` + `identityOf` on a mutual-TLS socket — paid once per connection, as the
 * RPC server caches it per HTTP/2 session).
 *
 *   npx tsx bench/token-verify.ts                 ~1.5 s per row
 *   npx tsx bench/token-verify.ts --seconds 0.5
 *   … --json                                      one JSON document on stdout
 *
 * Single thread, one core; the test issuer runs in this process (only the cold row touches it).
 * Not part of the test suite.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls, { type TLSSocket } from 'node:tls';
import { parseArgs } from 'node:util';
import { importJWK, jwtVerify } from 'jose';
import { parseOidcConfig } from '../src/identity/oidc-config.js';
import { createTokenVerifier } from '../src/identity/token-verifier.js';
import { initCa, loadCa } from '../src/pki/ca.js';
import { createSiteCertificate } from '../src/pki/site.js';
import { identityOf } from '../src/transport/tls.js';
import { startTestIssuer, type TestAlg } from '../test/support/test-issuer.js';
import { machineInfo } from './lib/env.js';
import { ratio, round } from './lib/stats.js';
import { num, table, times } from './lib/table.js';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '1.5' },
    json: { type: 'boolean', default: false },
  },
});
const SECONDS = Number(args.seconds);

interface Rate {
  perSecond: number;
  count: number;
  /** CPU µs per operation (user + system of this process). */
  cpuMicros: number;
}

/** Run `op(i)` one at a time until `seconds` pass (at most `max` times), after a warm-up. */
async function rate(
  op: (i: number) => Promise<void> | void,
  o: { max?: number; warm?: number } = {},
): Promise<Rate> {
  const max = o.max ?? 10_000_000;
  const warm = o.warm ?? 50;
  for (let i = 0; i < warm; i++) await op(i);
  const cpu0 = process.cpuUsage();
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(Math.round(SECONDS * 1e9));
  let i = 0;
  while (i < max) {
    await op(warm + i++);
    if ((i & 7) === 0 && process.hrtime.bigint() >= deadline) break;
  }
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  return { perSecond: i / elapsed, count: i, cpuMicros: (cpu.user + cpu.system) / i };
}

/** Claims as Keycloak puts them in an access token (realm and client roles, groups, an org claim). */
const keycloakClaims = {
  typ: 'Bearer',
  azp: 'pollen-cli',
  scope: 'openid profile email offline_access',
  email: 'ada@hospital-a.org',
  email_verified: true,
  preferred_username: 'ada',
  realm_access: { roles: ['offline_access', 'uma_authorization', 'default-roles-pollen', 'lead'] },
  resource_access: { pollen: { roles: ['lead'] }, account: { roles: ['manage-account', 'view-profile'] } },
  groups: ['/hospital-a', '/hospital-a/researchers'],
  org: 'hospital-a',
};

async function tokenRows(alg: TestAlg) {
  const issuer = await startTestIssuer({ alg });
  const config = parseOidcConfig({
    issuer: issuer.url,
    audience: issuer.audience,
    'client-id': 'pollen-cli',
  });
  const token = await issuer.sign({ ...keycloakClaims, aud: [issuer.audience, 'account'] }, { ttl: 3600 });
  const verifier = createTokenVerifier(config);
  const check = (who: { roles: string[]; org: string | undefined }) => {
    if (who.org !== 'hospital-a' || who.roles[0] !== 'lead') throw new Error('wrong identity');
  };
  const pollen = await rate(async () => check(await verifier.verify(token)));
  // Every call checked in full: what a token costs the first time a verifier sees it.
  const uncached = createTokenVerifier(config, { verifiedCacheSize: 0 });
  const full = await rate(async () => check(await uncached.verify(token)));

  // Baseline: jose alone, the key imported beforehand, the same checks of iss, aud and time.
  const key = await importJWK(issuer.keys[0]!.publicJwk, alg);
  const options = { issuer: config.issuer, audience: config.audience, algorithms: [alg], clockTolerance: 60 };
  const jose = await rate(async () => {
    if ((await jwtVerify(token, key, options)).payload['org'] !== 'hospital-a')
      throw new Error('wrong claims');
  });
  // The baseline must check: a token with a flipped signature bit fails.
  const broken = `${token.slice(0, -6)}${token.slice(-6, -5) === 'A' ? 'B' : 'A'}${token.slice(-5)}`;
  if (
    await jwtVerify(broken, key, options).then(
      () => true,
      () => false,
    )
  )
    throw new Error('jose accepts junk');

  // Cold: a verifier that has nothing yet (discovery, key set over HTTP on 127.0.0.1, key import).
  const cold = await rate(async () => check(await createTokenVerifier(config).verify(token)), {
    max: 2_000,
    warm: 5,
  });
  await issuer.close();
  return { alg, pollen, full, jose, cold, tokenBytes: token.length };
}

/** The server side of a mutual-TLS connection from an admin certificate of a fresh project CA. */
async function certificateRow() {
  const dir = mkdtempSync(join(tmpdir(), 'pollen-bench-token-'));
  try {
    await initCa({ name: 'bench', dir: join(dir, 'ca'), keyType: 'ec-p256' });
    const ca = await loadCa(join(dir, 'ca'));
    const out = join(dir, 'out');
    const common = { outDir: out, validityDays: 1 };
    await createSiteCertificate(ca, { ...common, name: 'superlink', type: 'server', hosts: ['127.0.0.1'] });
    await createSiteCertificate(ca, {
      ...common,
      name: 'ada@hospital-a.org',
      type: 'admin',
      org: 'hospital-a',
    });
    const read = (f: string) => readFileSync(join(out, f));
    const accepted = new Promise<TLSSocket>((resolve) => {
      const server = tls.createServer(
        {
          key: read('superlink.key'),
          cert: read('superlink.crt'),
          ca: read('rootCA.pem'),
          requestCert: true,
        },
        (s) => {
          resolve(s);
          server.close();
        },
      );
      server.listen(0, '127.0.0.1', () => {
        const port = (server.address() as { port: number }).port;
        const client = tls.connect({
          host: '127.0.0.1',
          port,
          key: read('ada@hospital-a.org.key'),
          cert: read('ada@hospital-a.org.crt'),
          ca: read('rootCA.pem'),
          servername: 'superlink',
          checkServerIdentity: () => undefined,
        });
        client.on('error', () => {});
      });
    });
    const socket = await accepted;
    if (!socket.authorized) throw new Error(`client certificate refused: ${socket.authorizationError}`);
    const parse = await rate(() => {
      if (identityOf(socket.getPeerCertificate())?.name !== 'ada@hospital-a.org')
        throw new Error('wrong identity');
    });
    socket.destroy();
    return parse;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const rows = [await tokenRows('ES256'), await tokenRows('RS256')];
const certificate = await certificateRow();
const machine = machineInfo();

if (args.json) {
  console.log(
    JSON.stringify(
      {
        machine,
        config: { seconds: SECONDS },
        certificateIdentityMicros: round(1e6 / certificate.perSecond, 2),
        rows: rows.map((r) => ({
          alg: r.alg,
          tokenBytes: r.tokenBytes,
          warmMicros: round(1e6 / r.pollen.perSecond, 2),
          warmCpuMicros: round(r.pollen.cpuMicros, 2),
          fullMicros: round(1e6 / r.full.perSecond, 2),
          fullCpuMicros: round(r.full.cpuMicros, 2),
          joseMicros: round(1e6 / r.jose.perSecond, 2),
          coldMicros: round(1e6 / r.cold.perSecond, 1),
          warmOverJose: round(ratio(r.jose.perSecond, r.pollen.perSecond), 2),
          warmOverCertificate: round(ratio(certificate.perSecond, r.pollen.perSecond), 2),
          fullOverJose: round(ratio(r.jose.perSecond, r.full.perSecond), 2),
        })),
      },
      null,
      2,
    ),
  );
} else {
  console.log(
    `Access-token verification, 1 thread — ${machine.cpuModel}, ${machine.cpus} cores, Node ${machine.node}, ${machine.openssl}\n`,
  );
  const line = (name: string, r: Rate, jose?: Rate) => [
    name,
    num(1e6 / r.perSecond, 1),
    num(r.cpuMicros, 1),
    num(r.perSecond),
    jose ? times(ratio(jose.perSecond, r.perSecond)) : '',
    jose ? times(ratio(certificate.perSecond, r.perSecond)) : '',
  ];
  console.log(
    table(
      ['check', 'µs each', 'CPU µs each', 'per second', 'Pollen ÷ jose', 'Pollen ÷ certificate'],
      [
        ...rows.flatMap((r) => [
          line(`verify() warm, ${r.alg} (${r.tokenBytes} B token)`, r.pollen, r.jose),
          line(`verify() not remembered, ${r.alg}`, r.full, r.jose),
          line(`  jose jwtVerify alone, ${r.alg}`, r.jose),
          line(`verify() cold, ${r.alg} (discovery + key set)`, r.cold),
        ]),
        line('certificate identity (getPeerCertificate + identityOf)', certificate),
      ],
    ),
  );
  console.log(
    '\nwarm = keys cached and the token remembered from an earlier call (a client sends one token for' +
      '\nits lifetime); not remembered = keys cached, signature and claims checked in full; cold = a new' +
      '\nverifier: discovery, key set over HTTP on 127.0.0.1 and key import, issuer in this process.' +
      '\nThe certificate identity is paid once per connection (the RPC server caches it per HTTP/2' +
      '\nsession); a token once per token lifetime while it stays remembered.',
  );
}
