import { execFileSync } from 'node:child_process';
import { createHash, generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, expect, inject } from 'vitest';
import type { ListedEntry } from '../../src/audit/entry.js';
import { verifyAuditTrail } from '../../src/audit/verify.js';
import type { LoadedPolicy, SubjectType } from '../../src/enrollment/policy.js';
import { loadPolicy } from '../../src/enrollment/policy-load.js';
import { buildApp } from '../../src/enrollment/service/app.js';
import { type EnrollmentSchema, enrollmentMigrations } from '../../src/enrollment/service/schema.js';
import {
  type CertServiceConfig,
  type RunningCertService,
  startCertService,
} from '../../src/enrollment/service/server.js';
import { CertificateService, type CertificateServiceOptions } from '../../src/enrollment/service/service.js';
import { issueToken, loadTokenSigner, type TokenSigner } from '../../src/enrollment/token.js';
import { initCa, type LoadedCa, loadCa } from '../../src/pki/ca.js';
import { createCsrFromKey } from '../../src/pki/csr.js';
import type { KeyType } from '../../src/pki/keys.js';
import { type Database, openDatabase } from '../../src/store/database.js';
import { tempDir } from './cli.js';
import { createTestDatabase } from './postgres.js';

// What the Certificate Service tests share: the policy, an admin key, OpenSSL CSRs, poll proofs
// and the two store backends.

export const API_KEY = 'pollen_test_admin_key_0123456789abcdefghijklmnop';

/**
 * A policy for project `project`: one-use tokens valid a day, any site name, lead users by
 * default, then the approval `rules` in order (each a YAML flow mapping) and `more` YAML lines.
 */
export function testPolicy(project: string, rules: string[], more: string[] = []): string {
  return [
    `metadata: { project: "${project}", version: "1" }`,
    'token: { validity: 1d, max_uses: 1 }',
    'site: { name_pattern: "*" }',
    'user: { allowed_roles: [lead, member, org_admin], default_role: lead }',
    'approval:',
    '  method: policy',
    '  rules:',
    ...rules.map((r) => `    - ${r}`),
    ...more,
    '',
  ].join('\n');
}

/** hospital-* from loopback is approved, vpn-* from 10.20/16 too, evil-* refused, the rest waits. */
export const PENDING_POLICY = testPolicy('test-federation', [
  '{ name: "blocked", match: { site_name_pattern: "evil-*" }, action: reject }',
  '{ name: "hospitals-auto", match: { site_name_pattern: "hospital-*", source_ips: ["127.0.0.0/8"] }, action: approve }',
  '{ name: "vpn-auto", match: { site_name_pattern: "vpn-*", source_ips: ["10.20.0.0/16"] }, action: approve }',
  '{ name: "others-wait", match: {}, action: pending }',
]);

export type CsrKind = 'p256' | 'p384' | 'rsa2048' | 'rsa1024';

/** A CSR made by `openssl req` with a new key in `dir`, for CN=`cn` (or the `-subj` given). */
export function opensslCsr(dir: string, cn: string, kind: CsrKind = 'p256', subject = `/CN=${cn}`) {
  const key = join(dir, `${randomUUID()}.key`);
  const args =
    kind === 'p256' || kind === 'p384'
      ? ['-newkey', 'ec', '-pkeyopt', `ec_paramgen_curve:${kind === 'p256' ? 'P-256' : 'P-384'}`]
      : ['-newkey', `rsa:${kind === 'rsa2048' ? 2048 : 1024}`];
  const csr = execFileSync('openssl', ['req', '-new', ...args, '-nodes', '-keyout', key, '-subj', subject], {
    stdio: ['ignore', 'pipe', 'ignore'],
  }).toString();
  return { csr, keyPem: readFileSync(key, 'utf8'), keyPath: key };
}

/** The body of `POST /v1/requests/ID/status`: a P-256 or RSA key's signature over the id and time. */
export function pollProof(id: string, keyPem: string, timestamp: number) {
  return {
    timestamp,
    signature: sign('sha256', Buffer.from(`pollen-poll:v1:${id}:${timestamp}`), keyPem).toString('base64'),
  };
}

/** SQLite in the service's workspace (undefined), or a fresh PostgreSQL database. */
export const STORE_BACKENDS = [
  ['sqlite', async () => undefined],
  [
    'postgres',
    async () => createTestDatabase(inject('postgresUrl'), `svc_${randomUUID().replaceAll('-', '')}`),
  ],
] as const;

// ---------------------------------------------------------------------------------------------
// In-process: the service and its routes over a store, called with Fastify inject

/** A CA, its token key, PENDING_POLICY and a frozen clock in a temporary folder. */
export class RoutesFixture {
  readonly dir: string;
  private readonly cleanupDir: () => void;
  ca!: LoadedCa;
  signer!: TokenSigner;
  policy!: LoadedPolicy;
  /** The services' clock: it moves only when a test moves it (whole seconds, as certificates). */
  readonly clock = { t: Math.floor(Date.now() / 1000) * 1000 };
  readonly now = () => new Date(this.clock.t);

  constructor(prefix: string) {
    const t = tempDir(prefix);
    this.dir = t.dir;
    this.cleanupDir = t.cleanup;
  }

  /** For beforeAll. */
  readonly setup = async (): Promise<void> => {
    const caDir = join(this.dir, 'ca');
    await initCa({ name: 'Routes Test', dir: caDir });
    this.ca = await loadCa(caDir);
    this.signer = loadTokenSigner(caDir);
    writeFileSync(join(this.dir, 'policy.yaml'), PENDING_POLICY);
    this.policy = loadPolicy(join(this.dir, 'policy.yaml'));
  };

  /** For afterAll. */
  readonly cleanup = (): void => this.cleanupDir();

  tokenFor(subject: string, o: { type?: SubjectType; role?: string; policy?: LoadedPolicy } = {}): string {
    const { type, role } = o;
    return issueToken(this.signer, { subject, type, role, policy: o.policy ?? this.policy, now: this.now() })
      .token;
  }

  /** A CSR for `cn` with a new key: P-256 made here, or by `openssl req` when a key kind is named. */
  csrFor(cn: string, kind?: CsrKind): { csr: string; keyPem: string } {
    if (kind) return opensslCsr(this.dir, cn, kind);
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    return {
      csr: createCsrFromKey(privateKey, cn),
      keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    };
  }

  /** A store: SQLite in a folder of its own, or the PostgreSQL database given. */
  async openStore(name: string, database?: string): Promise<Database<EnrollmentSchema>> {
    const dir = join(this.dir, name);
    mkdirSync(dir, { recursive: true });
    return openDatabase<EnrollmentSchema>({
      url: database ?? join(dir, 'cert-service.db'),
      migrations: enrollmentMigrations,
    });
  }

  /** A CertificateService on `store` with this fixture's CA, policy, admin key and clock. */
  service(
    store: Database<EnrollmentSchema>,
    o: Partial<CertificateServiceOptions> = {},
  ): Promise<CertificateService> {
    return CertificateService.create({
      ca: this.ca,
      store,
      tokenSigner: this.signer,
      policy: this.policy,
      apiKeyHashes: [createHash('sha256').update(API_KEY).digest('hex')],
      now: this.now,
      ...o,
    });
  }

  /**
   * In a describe block: a service and its app on a fresh store (SQLite, or the PostgreSQL
   * database `makeDb` makes), open for the block's tests.
   */
  inProcess(name: string, makeDb: () => Promise<string | undefined>): InProcess {
    const s = {
      call: (...a: Parameters<typeof callApp> extends [unknown, ...infer R] ? R : never) =>
        callApp(s.app, ...a),
    } as InProcess;
    beforeAll(async () => {
      s.store = await this.openStore(name, await makeDb());
      s.service = await this.service(s.store);
      s.app = buildApp(s.service, { logger: false });
    });
    afterAll(async () => {
      await s.app.close();
      await s.store.close();
    });
    return s;
  }
}

export interface InProcess {
  store: Database<EnrollmentSchema>;
  service: CertificateService;
  app: FastifyInstance;
  call: (
    method: 'GET' | 'POST',
    url: string,
    body?: unknown,
    o?: { admin?: boolean; raw?: string; headers?: Record<string, string> },
  ) => Promise<Answer>;
}

/**
 * The audit log (GET /v1/audit) is one unbroken chain, records each of `actions`, and one
 * issuance for `issuedOnce` (a name that enrolled by a race or a retry).
 */
export function expectAuditChain(
  entries: { action: string; target: string }[],
  actions: string[],
  issuedOnce?: string,
): void {
  expect(verifyAuditTrail(entries as unknown as ListedEntry[], [], undefined).entries).toBe(entries.length);
  const seen = new Set(entries.map((e) => e.action));
  for (const a of actions) expect(seen.has(a), a).toBe(true);
  if (issuedOnce !== undefined)
    expect(entries.filter((e) => e.action === 'certificate.issued' && e.target === issuedOnce)).toHaveLength(
      1,
    );
}

export interface Answer {
  status: number;
  headers: Record<string, unknown>;
  json: Record<string, any>;
}

/** Call an app in-process; `raw` sends a body as is (with a JSON content type unless told). */
export async function callApp(
  app: FastifyInstance,
  method: 'GET' | 'POST',
  url: string,
  body?: unknown,
  o: { admin?: boolean; raw?: string; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const payload = o.raw ?? (body === undefined ? undefined : JSON.stringify(body));
  const r = await app.inject({
    method,
    url,
    headers: {
      ...(payload !== undefined && { 'content-type': 'application/json' }),
      ...(o.admin && { authorization: `Bearer ${API_KEY}` }),
      ...o.headers,
    },
    ...(payload !== undefined && { payload }),
  });
  let json: Record<string, unknown>;
  try {
    json = r.json();
  } catch {
    json = { text: r.body };
  }
  return { status: r.statusCode, headers: r.headers, json };
}

// ---------------------------------------------------------------------------------------------
// Over HTTPS: a real service on 127.0.0.1

export interface LiveCertService {
  svc: RunningCertService;
  caDir: string;
  policyFile: string;
  /** A token for `subject` under the service's policy (naming organisation `org`, if given). */
  token(subject: string, org?: string): string;
  /** POST `body` as JSON over HTTPS (with the admin's API key when `admin`): status and answer. */
  post(path: string, body: unknown, admin?: boolean): Promise<{ status: number; json: Record<string, any> }>;
  /** POST /v1/enroll for `name` with a new token (for `org`, if given) and a CSR made by OpenSSL. */
  enroll(name: string, org?: string): Promise<{ status: number; json: Record<string, any> }>;
  /** Stop the service and its HTTPS client (the folder stays). */
  close(): Promise<void>;
}

/**
 * A Certificate Service on a free port of 127.0.0.1 (no log, no tidying) over a new CA named
 * `name` in DIR/ca (or the existing CA folder `caDir`), `policy` in DIR/policy.yaml and its
 * workspace in DIR/ws, with admin `apiKey`.
 */
export async function startLiveCertService(
  dir: string,
  o: { name: string; policy: string; apiKey: string; keyType?: KeyType } & Partial<CertServiceConfig>,
): Promise<LiveCertService> {
  const { name, policy, apiKey, keyType, ...config } = o;
  const caDir = o.caDir ?? join(dir, 'ca');
  const policyFile = join(dir, 'policy.yaml');
  if (!o.caDir) await initCa({ name, dir: caDir, keyType });
  mkdirSync(dir, { recursive: true });
  writeFileSync(policyFile, policy);
  const svc = await startCertService({
    caDir,
    workspace: join(dir, 'ws'),
    host: '127.0.0.1',
    port: 0,
    apiKeys: [apiKey],
    policyFile,
    logger: false,
    tidyIntervalMs: 0,
    ...config,
  });
  const agent = new Agent({ connect: { ca: svc.service.ca.rootPem } });
  const signer = loadTokenSigner(caDir);
  const live: LiveCertService = {
    svc,
    caDir,
    policyFile,
    token: (subject, org) => issueToken(signer, { subject, org, policy: loadPolicy(policyFile) }).token,
    async post(path, body, admin = false) {
      const r = await request(`https://127.0.0.1:${svc.port}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(admin && { authorization: `Bearer ${apiKey}` }) },
        body: JSON.stringify(body),
        dispatcher: agent,
      });
      return { status: r.statusCode, json: (await r.body.json()) as Record<string, any> };
    },
    enroll: (cn, org) =>
      live.post('/v1/enroll', { token: live.token(cn, org), csr: opensslCsr(dir, cn).csr }),
    async close() {
      await agent.close();
      await svc.close();
    },
  };
  return live;
}
