/**
 * Enrollment benchmark: the Certificate Service end to end (HTTPS, token check, CSR check,
 * signing, durable write) in its own process, against baselines measured in the same run:
 * `openssl x509 -req` one process per CSR, and the raw ECDSA P-256 signing rate (openssl speed,
 * node:crypto). Also times `pollen token batch` as a whole process.
 *
 *   npm run bench                       full run (a few minutes at most)
 *   npx tsx bench/enrollment.ts --quick smaller run
 *   … --json                            one JSON document on stdout (always written to bench/out/)
 *   … --cpu-prof                        profile the service process; prints where its CPU goes
 *
 * Not part of the test suite: targets print PASS/FAIL lines but never change the exit code.
 */
import {
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign,
  verify,
  X509Certificate,
} from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import SQLite from 'better-sqlite3';
import { Pool } from 'undici';
import { loadPolicy } from '../src/enrollment/policy-load.js';
import { issueTokens, loadTokenSigner } from '../src/enrollment/token.js';
import { initCa } from '../src/pki/ca.js';
import { createCsrFromKey } from '../src/pki/csr.js';
import { type ProfileSummary, summarizeCpuProfile } from './lib/cpuprofile.js';
import { type MachineInfo, machineInfo, parseOpensslSpeedSign } from './lib/env.js';
import { closedLoop, openLoop, rateOverTime } from './lib/load.js';
import { havePostgres, queryNumber, startBenchPostgres } from './lib/postgres.js';
import {
  cleanEnv,
  jsonDocument,
  machineBusySince,
  machineCpu,
  processCpuMs,
  runOk,
  startService,
} from './lib/proc.js';
import { median, ratio, round, type Summary, summarize } from './lib/stats.js';
import { ms, num, table, times } from './lib/table.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const OUT_DIR = join(ROOT, 'bench', 'out');

// ---------------------------------------------------------------------------------------------
// Options

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    'cpu-prof': { type: 'boolean', default: false },
    'skip-postgres': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    n: { type: 'string' },
    concurrency: { type: 'string' },
    connections: { type: 'string' },
    'log-level': { type: 'string', default: 'info' },
    bin: { type: 'string' },
    workers: { type: 'string' },
    'paced-rate': { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (flags.help) {
  process.stdout.write(`Usage: npx tsx bench/enrollment.ts [options]

  --quick            smaller run (about a minute)
  --json             print one JSON document on stdout (progress goes to stderr)
  --cpu-prof         run the service under node --cpu-prof and print its top functions
  --skip-postgres    leave out the PostgreSQL pass
  --n N              enrollments in the timed SQLite pass (default 8000, quick 2000)
  --concurrency C    requests in flight (default 64)
  --connections K    keep-alive connections (default 32)
  --log-level L      the service's --log-level (default info, as in production)
  --keep             keep the temporary folder (CA, workspaces, logs)
  --bin FILE         the pollen CLI to measure (default bin/pollen.js): compare two builds
  --workers N        the service's --workers (default 1, the service's default)
  --paced-rate R     arrivals per second of the paced pass (default 1000, the target rate)

Writes bench/out/enrollment.json. Build first (npm run bench does): npx tsc -p tsconfig.build.json
`);
  process.exit(0);
}

const quick = flags.quick!;
/** The CLI under test: this checkout's build unless --bin names another (A/B between builds). */
const BIN = resolve(flags.bin ?? join(ROOT, 'bin', 'pollen.js'));
const cfg = {
  n: Number(flags.n ?? (quick ? 2000 : 8000)),
  warmup: quick ? 500 : 1000,
  concurrency: Number(flags.concurrency ?? 64),
  connections: Number(flags.connections ?? 32),
  pacedRate: Number(flags['paced-rate'] ?? 1000),
  workers: Number(flags.workers ?? 1),
  pacedN: quick ? 750 : 2500,
  pgN: quick ? 500 : 2000,
  x509Csrs: quick ? 60 : 200,
  speedSeconds: quick ? 1 : 3,
  nodeSignSeconds: quick ? 1 : 2,
  tokenCount: 10_000,
  tokenRuns: quick ? 1 : 3,
  logLevel: flags['log-level']!,
  cpuProf: flags['cpu-prof']!,
};
for (const [k, v] of Object.entries(cfg))
  if (typeof v === 'number' && (!Number.isInteger(v) || v <= 0))
    throw new Error(`--${k} must be a positive integer`);

const log = (msg: string) => process.stderr.write(`› ${msg}\n`);

// ---------------------------------------------------------------------------------------------
// Result shapes (the JSON document)

interface CryptoResult {
  nodeSignPerSec: number;
  nodeVerifyPerSec: number;
  /** createPublicKey() of a P-256 SubjectPublicKeyInfo (DER), as a CSR check does once. */
  nodeSpkiParsePerSec: number;
  opensslSignPerSec: number;
  opensslVerifyPerSec: number;
  /** One signature, two verifications (token, CSR) and one key parse per enrollment, node:crypto rates. */
  cryptoFloorPerSec: number;
}

interface X509Result {
  csrs: number;
  sequentialPerSec: number;
  parallel: number;
  parallelPerSec: number;
}

interface ServicePass {
  backend: 'sqlite' | 'postgres';
  n: number;
  warmup: number;
  concurrency: number;
  connections: number;
  enrollmentsPerSec: number;
  latencyMs: Summary;
  errors: number;
  errorSamples: string[];
  /** Completions per second over five equal slices of the timed pass (a decaying rate shows here). */
  ratePerSlice: number[];
  /** CPU time of the service process per enrollment, and its utilisation of one core. */
  serviceCpuMsPerEnrollment: number | undefined;
  serviceCpuPct: number | undefined;
  loadGeneratorCpuPct: number;
  /** CPU that other processes on the machine took during the timed pass (percent of one core). */
  otherProcessesCpuPct: number | undefined;
  paced?: {
    ratePerSec: number;
    n: number;
    achievedPerSec: number;
    latencyMs: Summary;
    errors: number;
  };
  /** Certificates that parsed, name the subject, carry the CSR key and verify with the intermediate. */
  verified: number;
  /** Rows in the certificates table after the service stopped (= every enrollment, durably). */
  storedRows: number;
  storeSettings?: Record<string, string>;
}

interface TokenBatchRun {
  medianMs: number;
  minMs: number;
  maxMs: number;
  tokensPerSec: number;
}

interface TokenResult {
  count: number;
  runs: number;
  csv: TokenBatchRun;
  txt: TokenBatchRun;
  dir: TokenBatchRun;
  /** `node bin/pollen.js --version`: what any CLI command pays before it does anything. */
  startupMs: number;
  /** issueTokens() inside this process (no process start, no file). */
  inProcessPerSec: number;
}

interface Target {
  name: string;
  value: string;
  pass: boolean;
}

// ---------------------------------------------------------------------------------------------
// Baselines: raw signing, openssl x509

function loopRate(seconds: number, fn: () => void): number {
  const end = performance.now() + seconds * 1000;
  let count = 0;
  const t0 = performance.now();
  let now = t0;
  while (now < end) {
    for (let i = 0; i < 50; i++) fn();
    count += 50;
    now = performance.now();
  }
  return (count / (now - t0)) * 1000;
}

async function measureCrypto(): Promise<CryptoResult> {
  log('raw ECDSA P-256: node:crypto sign/verify');
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const message = randomBytes(450); // about the size of a site certificate's TBSCertificate
  const signature = sign('sha256', message, { key: privateKey, dsaEncoding: 'der' });
  const nodeSignPerSec = loopRate(cfg.nodeSignSeconds, () =>
    sign('sha256', message, { key: privateKey, dsaEncoding: 'der' }),
  );
  const nodeVerifyPerSec = loopRate(Math.max(1, cfg.nodeSignSeconds / 2), () => {
    if (!verify('sha256', message, { key: publicKey, dsaEncoding: 'der' }, signature))
      throw new Error('verify failed');
  });
  const spkis = Array.from({ length: 256 }, () =>
    generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' }),
  );
  let k = 0;
  const nodeSpkiParsePerSec = loopRate(Math.max(1, cfg.nodeSignSeconds / 2), () => {
    createPublicKey({ key: spkis[k++ & 255]!, format: 'der', type: 'spki' });
  });
  log(`raw ECDSA P-256: openssl speed -seconds ${cfg.speedSeconds} ecdsap256`);
  const speed = await runOk('openssl', ['speed', '-seconds', String(cfg.speedSeconds), 'ecdsap256'], {
    timeoutMs: 60_000,
  });
  const { sign: opensslSignPerSec, verify: opensslVerifyPerSec } = parseOpensslSpeedSign(speed.stdout);
  return {
    nodeSignPerSec,
    nodeVerifyPerSec,
    nodeSpkiParsePerSec,
    opensslSignPerSec,
    opensslVerifyPerSec,
    cryptoFloorPerSec: 1 / (1 / nodeSignPerSec + 2 / nodeVerifyPerSec + 1 / nodeSpkiParsePerSec),
  };
}

async function measureOpensslX509(work: string, caDir: string): Promise<X509Result> {
  const dir = join(work, 'openssl-x509');
  mkdirSync(dir);
  const csrs: string[] = [];
  for (let i = 0; i < cfg.x509Csrs; i++) {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const file = join(dir, `site-${i}.csr`);
    writeFileSync(file, createCsrFromKey(privateKey, `site-${i}`));
    csrs.push(file);
  }
  // The same profile the service issues: CA:FALSE, digitalSignature, clientAuth, a URI SAN, key ids.
  const ext = join(dir, 'ext.cnf');
  writeFileSync(
    ext,
    [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=clientAuth',
      'subjectAltName=URI:pollen://bench/client/site',
      'subjectKeyIdentifier=hash',
      'authorityKeyIdentifier=keyid',
      '',
    ].join('\n'),
  );
  const one = (i: number, tag: string) =>
    runOk(
      'openssl',
      [
        'x509',
        '-req',
        '-in',
        csrs[i]!,
        '-CA',
        join(caDir, 'intermediateCA.pem'),
        '-CAkey',
        join(caDir, 'intermediateCA.key'),
        '-days',
        '30',
        '-sha256',
        '-extfile',
        ext,
        '-out',
        join(dir, `${tag}-${i}.pem`),
      ],
      { timeoutMs: 30_000 },
    );
  log(`openssl x509 -req: ${cfg.x509Csrs} CSRs, one process each, one at a time`);
  let t0 = performance.now();
  for (let i = 0; i < csrs.length; i++) await one(i, 'seq');
  const sequentialPerSec = (csrs.length / (performance.now() - t0)) * 1000;
  const parallel = cpus().length;
  log(`openssl x509 -req: ${cfg.x509Csrs} CSRs, ${parallel} at a time`);
  t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      for (let i = next++; i < csrs.length; i = next++) await one(i, 'par');
    }),
  );
  const parallelPerSec = (csrs.length / (performance.now() - t0)) * 1000;
  const made = readdirSync(dir).filter((f) => f.endsWith('.pem')).length;
  if (made !== 2 * csrs.length)
    throw new Error(`openssl made ${made} certificates, expected ${2 * csrs.length}`);
  rmSync(dir, { recursive: true, force: true });
  return { csrs: csrs.length, sequentialPerSec, parallel, parallelPerSec };
}

// ---------------------------------------------------------------------------------------------
// The service

interface Material {
  subjects: string[];
  bodies: string[];
  spki: Buffer[];
  tokensPerSec: number;
}

/** Tokens and CSRs made before any timing: distinct subjects, single-use tokens, P-256 keys. */
async function prepareMaterial(caDir: string, count: number, prefix: string): Promise<Material> {
  const signer = loadTokenSigner(caDir);
  const subjects = Array.from({ length: count }, (_, i) => `${prefix}-${i + 1}`);
  const t0 = performance.now();
  const tokens = await issueTokens(signer, subjects, { policy: loadPolicy() });
  const tokensPerSec = (count / (performance.now() - t0)) * 1000;
  const bodies: string[] = [];
  const spki: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    spki.push(createPublicKey(privateKey).export({ type: 'spki', format: 'der' }));
    bodies.push(JSON.stringify({ token: tokens[i]!.token, csr: createCsrFromKey(privateKey, subjects[i]!) }));
  }
  return { subjects, bodies, spki, tokensPerSec };
}

interface ServiceInfo {
  url: string;
  port: number;
  database: string;
}

async function measureService(o: {
  backend: 'sqlite' | 'postgres';
  work: string;
  caDir: string;
  apiKeyFile: string;
  n: number;
  paced: boolean;
  database?: string;
  storeSettings?: Record<string, string>;
  profileDir?: string;
}): Promise<{ pass: ServicePass; tokensPerSec: number; profile?: string }> {
  const ws = join(o.work, `ws-${o.backend}`);
  const pacedN = o.paced ? cfg.pacedN : 0;
  const total = cfg.warmup + o.n + pacedN;
  log(`${o.backend}: ${total} tokens and CSRs (P-256), made before timing`);
  const m = await prepareMaterial(o.caDir, total, `${o.backend}-site`);
  const rootPem = readFileSync(join(o.caDir, 'rootCA.pem'), 'utf8');
  const intermediate = new X509Certificate(readFileSync(join(o.caDir, 'intermediateCA.pem')));

  const nodeArgs = o.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${o.profileDir}`] : [];
  const args = [
    ...nodeArgs,
    BIN,
    '--json',
    'cert-service',
    '-c',
    o.caDir,
    '-w',
    ws,
    '--host',
    '127.0.0.1',
    '-p',
    '0',
    '--api-key-file',
    o.apiKeyFile,
    '--log-level',
    cfg.logLevel,
    ...(o.database ? ['--database', o.database] : []),
    '--workers',
    String(cfg.workers),
  ];
  log(`${o.backend}: starting node ${args.join(' ')}`);
  mkdirSync(ws, { recursive: true });
  const svc = await startService<ServiceInfo>(process.execPath, args, {
    ready: (s) => jsonDocument<ServiceInfo>(s),
    stderrFile: join(o.work, `cert-service-${o.backend}.log`),
    timeoutMs: 60_000,
  });
  const pool = new Pool(svc.info.url, {
    connections: cfg.connections,
    pipelining: 1,
    keepAliveTimeout: 60_000,
    connect: { ca: [rootPem] },
  });
  const certs: string[] = new Array(total);
  const send = async (i: number): Promise<boolean> => {
    const res = await pool.request({
      path: '/v1/enroll',
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: m.bodies[i]!,
    });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}: ${text.slice(0, 300)}`);
    const doc = JSON.parse(text) as { status?: string; name?: string; certificate?: string };
    if (doc.status !== 'issued' || doc.name !== m.subjects[i] || !doc.certificate) return false;
    certs[i] = doc.certificate;
    return true;
  };

  let pass: ServicePass;
  try {
    log(`${o.backend}: warm-up, ${cfg.warmup} enrollments`);
    const warm = await closedLoop({ total: cfg.warmup, concurrency: cfg.concurrency, send });
    if (warm.errors) throw new Error(`warm-up failed: ${warm.errorSamples.join('; ')}`);

    log(
      `${o.backend}: timed, ${o.n} enrollments, ${cfg.concurrency} in flight over ${cfg.connections} connections`,
    );
    const cpu0 = processCpuMs(svc.pid);
    const own0 = process.cpuUsage();
    const machine0 = machineCpu();
    const timed = await closedLoop({
      total: o.n,
      concurrency: cfg.concurrency,
      send: (i) => send(cfg.warmup + i),
    });
    const cpu1 = processCpuMs(svc.pid);
    const own = process.cpuUsage(own0);
    const machineBusy = machineBusySince(machine0, cpus().length);
    const serviceCpu = cpu0 !== undefined && cpu1 !== undefined ? cpu1 - cpu0 : undefined;

    let paced: ServicePass['paced'];
    if (pacedN) {
      log(`${o.backend}: paced, ${pacedN} enrollments arriving at ${cfg.pacedRate}/s`);
      const p = await openLoop({
        total: pacedN,
        ratePerSec: cfg.pacedRate,
        maxInFlight: 256,
        send: (i) => send(cfg.warmup + o.n + i),
      });
      paced = {
        ratePerSec: cfg.pacedRate,
        n: pacedN,
        achievedPerSec: (pacedN / p.wallMs) * 1000,
        latencyMs: summarize(p.latencies),
        errors: p.errors,
      };
    }
    pass = {
      backend: o.backend,
      n: o.n,
      warmup: cfg.warmup,
      concurrency: cfg.concurrency,
      connections: cfg.connections,
      enrollmentsPerSec: (o.n / timed.wallMs) * 1000,
      latencyMs: summarize(timed.latencies),
      errors: timed.errors,
      errorSamples: timed.errorSamples,
      ratePerSlice: rateOverTime(timed.completedAt, 5),
      serviceCpuMsPerEnrollment: serviceCpu === undefined ? undefined : serviceCpu / o.n,
      serviceCpuPct: serviceCpu === undefined ? undefined : (100 * serviceCpu) / timed.wallMs,
      loadGeneratorCpuPct: (100 * (own.user + own.system)) / 1000 / timed.wallMs,
      otherProcessesCpuPct:
        machineBusy === undefined || serviceCpu === undefined
          ? undefined
          : Math.max(
              0,
              machineBusy -
                (100 * serviceCpu) / timed.wallMs -
                (100 * (own.user + own.system)) / 1000 / timed.wallMs,
            ),
      paced,
      verified: 0,
      storedRows: 0,
      storeSettings: o.storeSettings,
    };
  } finally {
    await pool.close();
    const stopped = await svc.stop();
    if (stopped.code !== 0) log(`${o.backend}: the service exited with ${stopped.code ?? stopped.signal}`);
  }

  log(`${o.backend}: checking every certificate and the stored rows`);
  const intermediateKey = intermediate.publicKey;
  for (let i = 0; i < total; i++) {
    const pem = certs[i];
    if (!pem) continue;
    const c = new X509Certificate(pem);
    const cn = /(?:^|\n)CN=([^\n]+)/.exec(c.subject)?.[1];
    const spki = c.publicKey.export({ type: 'spki', format: 'der' });
    if (cn === m.subjects[i] && spki.equals(m.spki[i]!) && c.verify(intermediateKey)) pass.verified++;
  }
  if (o.backend === 'sqlite') {
    const db = new SQLite(join(ws, 'cert-service.db'), { readonly: true });
    try {
      pass.storedRows = (db.prepare('SELECT count(*) AS n FROM certificates').get() as { n: number }).n;
    } finally {
      db.close();
    }
  } else {
    pass.storedRows = await queryNumber(o.database!, 'SELECT count(*) FROM certificates');
  }
  let profile: string | undefined;
  if (o.profileDir) {
    const files = readdirSync(o.profileDir)
      .filter((f) => f.endsWith('.cpuprofile'))
      .map((f) => join(o.profileDir!, f));
    profile = files.sort().pop();
  }
  return { pass, tokensPerSec: m.tokensPerSec, profile };
}

// ---------------------------------------------------------------------------------------------
// token batch

async function measureTokenBatch(work: string, caDir: string, inProcessPerSec: number): Promise<TokenResult> {
  const env = cleanEnv();
  const starts: number[] = [];
  log('process start: node bin/pollen.js --version');
  for (let r = 0; r < cfg.tokenRuns + 1; r++)
    starts.push((await runOk(process.execPath, [BIN, '--version'], { env })).wallMs);
  starts.shift(); // the first one warms the file cache
  const one = async (kind: 'csv' | 'txt' | 'dir'): Promise<TokenBatchRun> => {
    const times: number[] = [];
    for (let r = 0; r <= cfg.tokenRuns; r++) {
      const out = kind === 'dir' ? join(work, `tokens-${r}`) + '/' : join(work, `tokens-${r}.${kind}`);
      log(
        `token batch -n ${cfg.tokenCount} -o ${kind === 'dir' ? 'DIR/' : `OUT.${kind}`}${r === 0 ? ' (warm-up)' : ''}`,
      );
      const res = await runOk(
        process.execPath,
        [BIN, 'token', 'batch', '-n', String(cfg.tokenCount), '--prefix', 'site', '-c', caDir, '-o', out],
        { env, timeoutMs: 120_000 },
      );
      const made =
        kind === 'dir'
          ? readdirSync(out).filter((f) => f.endsWith('.token')).length
          : readFileSync(out, 'utf8').trimEnd().split('\n').length - (kind === 'csv' ? 1 : 0);
      if (made !== cfg.tokenCount) throw new Error(`token batch wrote ${made} tokens to ${out}`);
      rmSync(out, { recursive: true, force: true });
      if (r > 0) times.push(res.wallMs);
    }
    const med = median(times);
    return {
      medianMs: med,
      minMs: Math.min(...times),
      maxMs: Math.max(...times),
      tokensPerSec: (cfg.tokenCount / med) * 1000,
    };
  };
  return {
    count: cfg.tokenCount,
    runs: cfg.tokenRuns,
    csv: await one('csv'),
    txt: await one('txt'),
    dir: await one('dir'),
    startupMs: median(starts),
    inProcessPerSec,
  };
}

// ---------------------------------------------------------------------------------------------
// Report

function printProfile(p: ProfileSummary, file: string): string {
  const lines: string[] = [];
  lines.push(`\nService CPU profile (${file})`);
  lines.push(`busy ${num(p.busyMs)} ms, idle ${num(p.idleMs)} ms of the service's main thread\n`);
  lines.push(
    table(
      ['top self time', 'self %', 'total %', 'where'],
      p.bySelf
        .slice(0, 20)
        .map((r) => [r.fn, `${r.selfPct.toFixed(1)}%`, `${r.totalPct.toFixed(1)}%`, r.where]),
    ),
  );
  lines.push('');
  lines.push(
    table(
      ['top total (inclusive) time', 'total %', 'self %', 'where'],
      p.byTotal
        .slice(0, 25)
        .map((r) => [r.fn, `${r.totalPct.toFixed(1)}%`, `${r.selfPct.toFixed(1)}%`, r.where]),
    ),
  );
  lines.push('');
  lines.push(
    table(
      ['self time by area', 'self %'],
      p.byArea.slice(0, 15).map((a) => [a.area, `${a.selfPct.toFixed(1)}%`]),
    ),
  );
  return lines.join('\n');
}

function report(d: {
  machine: MachineInfo;
  crypto: CryptoResult;
  x509: X509Result;
  sqlite: ServicePass;
  postgres: ServicePass | { skipped: string };
  tokens: TokenResult;
  ratios: Record<string, number>;
  targets: Target[];
}): string {
  const { crypto, x509, sqlite, tokens, ratios } = d;
  const pg = 'skipped' in d.postgres ? undefined : d.postgres;
  const L: string[] = [];
  L.push(
    `Enrollment benchmark${quick ? ' (--quick)' : ''}${cfg.cpuProf ? ' (service under --cpu-prof: figures are slowed, do not quote)' : ''}`,
  );
  L.push(
    `${d.machine.date} · ${d.machine.cpus} × ${d.machine.cpuModel} · Node ${d.machine.node} · ${d.machine.openssl} · load ${d.machine.loadAverage1m} · commit ${d.machine.commit}\n`,
  );
  const svcRow = (label: string, s: ServicePass): (string | number)[] => [
    label,
    `${num(s.enrollmentsPerSec)}/s`,
    ms(s.latencyMs.p50),
    ms(s.latencyMs.p95),
    ms(s.latencyMs.p99),
    ms(s.latencyMs.max),
    `${s.errors}`,
    `${s.verified}/${s.n + s.warmup + (s.paced?.n ?? 0)}`,
  ];
  L.push(
    table(
      [
        'Certificate Service, POST /v1/enroll over HTTPS',
        'rate',
        'p50',
        'p95',
        'p99',
        'max',
        'errors',
        'verified',
      ],
      [
        svcRow(
          `SQLite (WAL, synchronous=FULL), ${cfg.workers} worker(s), ${sqlite.n} enrollments, ${sqlite.concurrency} in flight`,
          sqlite,
        ),
        ...(sqlite.paced
          ? [
              [
                `SQLite, ${sqlite.paced.n} arriving at a fixed ${sqlite.paced.ratePerSec}/s`,
                `${num(sqlite.paced.achievedPerSec)}/s`,
                ms(sqlite.paced.latencyMs.p50),
                ms(sqlite.paced.latencyMs.p95),
                ms(sqlite.paced.latencyMs.p99),
                ms(sqlite.paced.latencyMs.max),
                `${sqlite.paced.errors}`,
                '',
              ],
            ]
          : []),
        pg
          ? svcRow(
              `PostgreSQL ${pg.storeSettings?.['server_version'] ?? ''} (fsync=${pg.storeSettings?.['fsync'] ?? '?'}), ${pg.n} enrollments, ${pg.concurrency} in flight`,
              pg,
            )
          : `PostgreSQL: skipped (${(d.postgres as { skipped: string }).skipped})`,
      ],
    ),
  );
  const cpuLine = (s: ServicePass) =>
    [
      `  ${s.backend}: service CPU ${num(s.serviceCpuMsPerEnrollment, 3)} ms per enrollment`,
      `(${num(s.serviceCpuPct)}% of one core), load generator ${num(s.loadGeneratorCpuPct)}%,`,
      `other processes ${num(s.otherProcessesCpuPct)}%;`,
      `rate over five slices ${s.ratePerSlice.map((r) => num(r)).join(' → ')}/s; ${s.storedRows} rows stored`,
    ].join(' ');
  L.push(cpuLine(sqlite));
  if (pg) L.push(cpuLine(pg));
  const busy = [sqlite, pg].filter((s): s is ServicePass => (s?.otherProcessesCpuPct ?? 0) > 25);
  if (busy.length)
    L.push(
      `  WARNING: other processes took ${busy.map((s) => `${num(s.otherProcessesCpuPct)}% of a core during the ${s.backend} pass`).join(', ')}: the machine was shared, these figures are low. Run again when it is quiet.`,
    );
  L.push('');
  L.push(
    table(
      ['Baselines, same run', 'rate'],
      [
        [
          `openssl x509 -req, one process per CSR, ${x509.csrs} CSRs, one at a time`,
          `${num(x509.sequentialPerSec)}/s`,
        ],
        [
          `openssl x509 -req, one process per CSR, ${x509.parallel} at a time`,
          `${num(x509.parallelPerSec)}/s`,
        ],
        [
          `ECDSA P-256 sign, openssl speed -seconds ${cfg.speedSeconds} ecdsap256`,
          `${num(crypto.opensslSignPerSec)}/s`,
        ],
        [`ECDSA P-256 verify, openssl speed`, `${num(crypto.opensslVerifyPerSec)}/s`],
        [`ECDSA P-256 sign, node:crypto sign() loop`, `${num(crypto.nodeSignPerSec)}/s`],
        [`ECDSA P-256 verify, node:crypto verify() loop`, `${num(crypto.nodeVerifyPerSec)}/s`],
        [
          `P-256 public key parse, node:crypto createPublicKey(SPKI DER)`,
          `${num(crypto.nodeSpkiParsePerSec)}/s`,
        ],
        [
          `crypto floor of one enrollment (1 sign + 2 verify + 1 key parse, node:crypto, one core)`,
          `${num(crypto.cryptoFloorPerSec)}/s`,
        ],
      ],
    ),
  );
  L.push('');
  const tb = (label: string, r: TokenBatchRun): (string | number)[] => [
    label,
    `${num(r.medianMs / 1000, 2)} s`,
    `${num(r.minMs / 1000, 2)}–${num(r.maxMs / 1000, 2)} s`,
    `${num(r.tokensPerSec)}/s`,
  ];
  L.push(
    table(
      [
        `pollen token batch -n ${tokens.count} (whole process, median of ${tokens.runs})`,
        'time',
        'min–max',
        'tokens/s',
      ],
      [
        tb('-o OUT.csv', tokens.csv),
        tb('-o OUT.txt', tokens.txt),
        tb('-o DIR/ (one file per token)', tokens.dir),
        [
          'node bin/pollen.js --version (process start, for scale)',
          `${num(tokens.startupMs / 1000, 2)} s`,
          '',
          '',
        ],
        ['issueTokens() in process (no start-up, no file)', '', '', `${num(tokens.inProcessPerSec)}/s`],
        ['raw ES256 signing, node:crypto (from above)', '', '', `${num(crypto.nodeSignPerSec)}/s`],
      ],
    ),
  );
  L.push('');
  L.push(
    table(
      ['Ratios (same run)', 'ratio'],
      [
        [
          'service SQLite enrollments/s ÷ openssl x509 certificates/s (one at a time)',
          times(ratios['serviceVsOpensslX509']),
        ],
        [
          'service SQLite enrollments/s ÷ openssl x509 certificates/s (parallel)',
          times(ratios['serviceVsOpensslX509Parallel']),
        ],
        [
          'service SQLite enrollments/s ÷ raw P-256 signatures/s (node:crypto)',
          times(ratios['serviceVsNodeSign']),
        ],
        [
          'service SQLite enrollments/s ÷ raw P-256 signatures/s (openssl speed)',
          times(ratios['serviceVsOpensslSign']),
        ],
        [
          'service SQLite enrollments/s ÷ crypto floor (1 sign + 2 verify + 1 key parse)',
          times(ratios['serviceVsCryptoFloor']),
        ],
        [
          'service PostgreSQL enrollments/s ÷ service SQLite enrollments/s',
          times(ratios['postgresVsSqlite']),
        ],
        ['token batch (CSV) tokens/s ÷ raw ES256 signatures/s', times(ratios['tokenBatchVsNodeSign'])],
        [
          'issueTokens() in process tokens/s ÷ raw ES256 signatures/s',
          times(ratios['inProcessTokensVsNodeSign']),
        ],
      ],
    ),
  );
  L.push('\nTargets (informational; the bench never fails the test suite)');
  for (const t of d.targets) L.push(`  ${t.pass ? 'PASS' : 'FAIL'}  ${t.name}: ${t.value}`);
  L.push(
    `  note: in a closed loop mean latency = in-flight ÷ rate (Little's law): p99 < 50 ms at ${cfg.concurrency} in flight needs more than ${num(cfg.concurrency / 0.05)}/s.`,
  );
  return L.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Main

async function main() {
  if (!existsSync(join(dirname(BIN), '..', 'dist', 'cli', 'main.js')))
    throw new Error('dist/ is missing: run `npx tsc -p tsconfig.build.json` (npm run bench does it)');
  mkdirSync(OUT_DIR, { recursive: true });
  const machine = machineInfo();
  const work = mkdtempSync(join(tmpdir(), 'pollen-bench-'));
  log(`working in ${work}`);
  try {
    log('creating a project CA (root P-384, intermediate P-256)');
    const caDir = join(work, 'ca');
    await initCa({ name: 'Bench', dir: caDir });
    const apiKeyFile = join(work, 'api_key.txt');
    writeFileSync(apiKeyFile, `pollen_${randomBytes(32).toString('base64url')}\n`, { mode: 0o600 });

    const crypto = await measureCrypto();
    const x509 = await measureOpensslX509(work, caDir);

    let profileDir: string | undefined;
    if (cfg.cpuProf) {
      profileDir = join(OUT_DIR, 'profiles', new Date().toISOString().replace(/[:.]/g, '-'));
      mkdirSync(profileDir, { recursive: true });
    }
    const s = await measureService({
      backend: 'sqlite',
      work,
      caDir,
      apiKeyFile,
      n: cfg.n,
      paced: true,
      profileDir,
    });
    const sqlite = s.pass;

    let postgres: ServicePass | { skipped: string };
    if (flags['skip-postgres']) postgres = { skipped: '--skip-postgres' };
    else if (!havePostgres()) postgres = { skipped: 'initdb/pg_ctl not on the PATH' };
    else {
      log('postgres: starting a throw-away server (initdb, pg_ctl; fsync on)');
      const pgServer = await startBenchPostgres();
      try {
        postgres = (
          await measureService({
            backend: 'postgres',
            work,
            caDir,
            apiKeyFile,
            n: cfg.pgN,
            paced: false,
            database: pgServer.url,
            storeSettings: pgServer.settings,
          })
        ).pass;
      } finally {
        pgServer.stop();
      }
    }

    const tokens = await measureTokenBatch(work, caDir, s.tokensPerSec);

    const pg = 'skipped' in postgres ? undefined : postgres;
    const ratios: Record<string, number> = {
      serviceVsOpensslX509: ratio(sqlite.enrollmentsPerSec, x509.sequentialPerSec),
      serviceVsOpensslX509Parallel: ratio(sqlite.enrollmentsPerSec, x509.parallelPerSec),
      serviceVsNodeSign: ratio(sqlite.enrollmentsPerSec, crypto.nodeSignPerSec),
      serviceVsOpensslSign: ratio(sqlite.enrollmentsPerSec, crypto.opensslSignPerSec),
      serviceVsCryptoFloor: ratio(sqlite.enrollmentsPerSec, crypto.cryptoFloorPerSec),
      postgresVsSqlite: ratio(pg?.enrollmentsPerSec, sqlite.enrollmentsPerSec),
      tokenBatchVsNodeSign: ratio(tokens.csv.tokensPerSec, crypto.nodeSignPerSec),
      inProcessTokensVsNodeSign: ratio(tokens.inProcessPerSec, crypto.nodeSignPerSec),
    };
    const allGood =
      sqlite.errors === 0 && sqlite.verified === sqlite.n + sqlite.warmup + (sqlite.paced?.n ?? 0);
    const targets: Target[] = [
      {
        name: `≥ 1,000 enrollments/s, SQLite, ${cfg.concurrency} in flight`,
        value: `${num(sqlite.enrollmentsPerSec)}/s`,
        pass: sqlite.enrollmentsPerSec >= 1000,
      },
      {
        name: `p99 < 50 ms, SQLite, ${cfg.concurrency} in flight`,
        value: ms(sqlite.latencyMs.p99),
        pass: sqlite.latencyMs.p99 < 50,
      },
      ...(sqlite.paced
        ? [
            {
              name: `p99 < 50 ms, SQLite, arrivals at a fixed ${sqlite.paced.ratePerSec}/s`,
              value: ms(sqlite.paced.latencyMs.p99),
              pass: sqlite.paced.latencyMs.p99 < 50,
            },
          ]
        : []),
      {
        name: 'every answer 200 issued, every certificate verified and stored',
        value: `${sqlite.errors} errors, ${sqlite.verified} verified, ${sqlite.storedRows} stored`,
        pass:
          allGood &&
          sqlite.storedRows === sqlite.verified &&
          (!pg || (pg.errors === 0 && pg.storedRows === pg.verified)),
      },
      {
        name: `${num(cfg.tokenCount)} tokens < 5 s (token batch -o OUT.csv, whole process)`,
        value: `${num(tokens.csv.medianMs / 1000, 2)} s`,
        pass: tokens.csv.medianMs < 5000,
      },
    ];

    let profile: (ProfileSummary & { file: string }) | undefined;
    if (s.profile) profile = { ...summarizeCpuProfile(s.profile, 40), file: s.profile };

    const text = report({ machine, crypto, x509, sqlite, postgres, tokens, ratios, targets });
    const doc = {
      bench: 'enrollment',
      version: 1,
      quick,
      profiled: cfg.cpuProf,
      command: `npx tsx bench/enrollment.ts ${process.argv.slice(2).join(' ')}`.trim(),
      machine,
      config: cfg,
      crypto,
      opensslX509: x509,
      service: { sqlite, postgres },
      tokenBatch: tokens,
      ratios,
      targets,
      profile,
    };
    const json = JSON.stringify(doc, (_k, v) => (typeof v === 'number' ? round(v, 3) : v), 2);
    writeFileSync(join(OUT_DIR, 'enrollment.json'), `${json}\n`);
    if (flags.json) process.stdout.write(`${json}\n`);
    else {
      process.stdout.write(`\n${text}\n`);
      if (profile) process.stdout.write(`${printProfile(profile, profile.file)}\n`);
      process.stdout.write(`\nWrote ${join('bench', 'out', 'enrollment.json')}\n`);
    }
  } finally {
    if (flags.keep) log(`kept ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
