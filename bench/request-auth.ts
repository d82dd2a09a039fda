/**
 * Fleet API request authentication: verifications/s of RequestVerifier for requests signed with
 * ECDSA P-256 and P-384 (session opening; with the key already seen, and not yet seen so it is
 * imported) and for session requests (HMAC-SHA256), each next to its bare primitives in the same
 * run (node:crypto `verify`; SHA-256 + `createHmac`), and the session ÷ ECDSA ratio that says
 * why sessions exist.
 *
 *   npx tsx bench/request-auth.ts                  ~1.5 s per row, 1 KiB bodies
 *   npx tsx bench/request-auth.ts --seconds 0.5 --body-bytes 65536
 *   … --json                                       one JSON document on stdout
 *
 * Single thread, one core. Not part of the test suite.
 */
import { createHmac, generateKeyPairSync, randomBytes, verify } from 'node:crypto';
import { parseArgs } from 'node:util';
import { nodeIdFromPublicKey } from '../src/pki/openssh.js';
import {
  canonicalString,
  NODE_AUTH_HEADERS as H,
  RequestSigner,
  RequestVerifier,
} from '../src/transport/node-request-auth.js';
import { machineInfo } from './lib/env.js';
import { ratio, round } from './lib/stats.js';
import { num, table, times } from './lib/table.js';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '1.5' },
    'body-bytes': { type: 'string', default: '1024' },
    json: { type: 'boolean', default: false },
  },
});
const SECONDS = Number(args.seconds);
const BODY = randomBytes(Number(args['body-bytes']));
const METHOD = '/pollen.v1.Fleet/PullMessages';

/** Run `op(i)` over prepared inputs until `seconds` pass (bounded by `inputs`), after a warm-up. */
function rate(inputs: number, op: (i: number) => void): { perSecond: number; count: number } {
  const warm = Math.min(50, Math.floor(inputs / 10));
  for (let i = 0; i < warm; i++) op(i);
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(Math.round(SECONDS * 1e9));
  let i = warm;
  while (i < inputs) {
    op(i++);
    if ((i & 15) === 0 && process.hrtime.bigint() >= deadline) break;
  }
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  return { perSecond: (i - warm) / elapsed, count: i - warm };
}

/** A generous count of inputs for a rate: prepared before the clock starts. */
function inputsFor(expectedPerSecond: number): number {
  return Math.ceil(expectedPerSecond * SECONDS * 2) + 100;
}

function ecdsaRow(curve: 'P-256' | 'P-384', expected: number, cold: boolean) {
  const key = generateKeyPairSync('ec', { namedCurve: curve }).privateKey;
  const signer = new RequestSigner(key);
  const nodeId = nodeIdFromPublicKey(key);
  const n = inputsFor(expected);
  const requests = Array.from({ length: n }, () => signer.signedHeaders(METHOD, BODY));
  let verifier = new RequestVerifier({ maxNonces: n + 1 });
  const isKeyAllowed = () => nodeId;
  const pollen = rate(n, (i) => {
    // Cold: a new verifier has not seen the key yet, as on a node's first session after a restart.
    if (cold) verifier = new RequestVerifier();
    const r = verifier.verifySignedRequest({
      method: METHOD,
      body: BODY,
      headers: requests[i]!,
      isKeyAllowed,
    });
    if (r.nodeId !== nodeId) throw new Error('wrong node id');
  });

  // Baseline: the bare ECDSA verify of the same canonical string (no parsing, no replay cache).
  const hash = curve === 'P-256' ? 'sha256' : 'sha384';
  const pub = signer.privateKey;
  const data = requests.map((h) => Buffer.from(canonicalString(METHOD, BODY, h[H.timestamp]!, h[H.nonce]!)));
  const sigs = requests.map((h) => Buffer.from(h[H.signature]!, 'base64url'));
  const bare = rate(n, (i) => {
    if (!verify(hash, data[i]!, { key: pub, dsaEncoding: 'ieee-p1363' }, sigs[i]!)) throw new Error('bad');
  });
  // Make sure the baseline really checks: a flipped bit must fail.
  const broken = Buffer.from(sigs[0]!);
  broken[3] = broken[3]! ^ 1;
  if (verify(hash, data[0]!, { key: pub, dsaEncoding: 'ieee-p1363' }, broken))
    throw new Error('verify accepts junk');
  return { name: `signed, ECDSA ${curve}${cold ? ', key not yet seen' : ''}`, pollen, bare };
}

function sessionRow(expected: number) {
  const key = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
  const signer = new RequestSigner(key);
  const n = inputsFor(expected);
  const verifier = new RequestVerifier({ maxNonces: n + 1 });
  const session = verifier.openSession(signer.nodeId);
  const requests = Array.from({ length: n }, () => signer.sessionHeaders(session, METHOD, BODY));
  const pollen = rate(n, (i) => {
    if (
      verifier.verifySessionRequest({ method: METHOD, body: BODY, headers: requests[i]! }) !== signer.nodeId
    )
      throw new Error('wrong node id');
  });
  // Baseline: the two hashes the design needs (body SHA-256 inside the canonical string, HMAC).
  const bare = rate(n, (i) => {
    const h = requests[i]!;
    const data = canonicalString(METHOD, BODY, h[H.timestamp]!, h[H.nonce]!);
    const mac = createHmac('sha256', session.secret).update(data).digest('base64url');
    if (mac !== h[H.mac]) throw new Error('bad mac');
  });
  return { name: 'session request, HMAC-SHA256', pollen, bare };
}

const rows = [
  ecdsaRow('P-256', 20_000, false),
  ecdsaRow('P-256', 10_000, true),
  ecdsaRow('P-384', 4_000, false),
  ecdsaRow('P-384', 3_000, true),
  sessionRow(400_000),
];
const session = rows.at(-1)!.pollen.perSecond;

const machine = machineInfo();
if (args.json) {
  console.log(
    JSON.stringify(
      {
        machine,
        config: { seconds: SECONDS, bodyBytes: BODY.length },
        rows: rows.map((r) => ({
          name: r.name,
          verificationsPerSecond: round(r.pollen.perSecond),
          barePrimitivePerSecond: round(r.bare.perSecond),
          count: r.pollen.count,
          sessionSpeedup: round(ratio(session, r.pollen.perSecond), 2),
        })),
      },
      null,
      2,
    ),
  );
} else {
  console.log(
    `Request authentication, 1 thread, ${BODY.length}-byte bodies — ${machine.cpuModel}, ${machine.cpus} cores, Node ${machine.node}, ${machine.openssl}\n`,
  );
  console.log(
    table(
      ['verification', 'Pollen /s', 'µs each', 'bare primitive /s', 'Pollen ÷ bare', 'session ÷ this'],
      rows.map((r) => [
        r.name,
        num(r.pollen.perSecond),
        num(1e6 / r.pollen.perSecond, 1),
        num(r.bare.perSecond),
        times(ratio(r.pollen.perSecond, r.bare.perSecond)),
        times(ratio(session, r.pollen.perSecond)),
      ]),
    ),
  );
  console.log(
    '\nPollen = RequestVerifier: header checks, body SHA-256, replay cache, key import when not yet seen.' +
      '\nbare = node:crypto verify on the prepared canonical string (keys imported beforehand);' +
      '\n       for sessions, body SHA-256 + canonical string + createHmac.',
  );
}
