import {
  createHash,
  createPublicKey,
  type KeyObject,
  randomBytes,
  timingSafeEqual,
  verify,
  X509Certificate,
} from 'node:crypto';
import { sql, type Transaction } from 'kysely';
import { PollenError } from '../../errors.js';
import type { LoadedCa } from '../../pki/ca.js';
import { createCrl } from '../../pki/crl.js';
import { checkCsr } from '../../pki/csr.js';
import { type CertType, issueSiteCertificate, type SiteProfile } from '../../pki/profiles.js';
import { verifyChain } from '../../pki/verify.js';
import { WriteBatcher } from '../../store/batcher.js';
import type { Database } from '../../store/database.js';
import { decide, type LoadedPolicy } from '../policy.js';
import { matchNamePattern } from '../policy-match.js';
import { issueTokens, type TokenClaims, type TokenSigner, verifyToken } from '../token.js';
import { AUDIT_GENESIS, type AuditEntry, auditHash } from './audit.js';
import {
  alreadyDecided,
  claimDecision,
  type HeldDecision,
  heldDecision,
  isAlreadyDecided,
} from './decision.js';
import type { EnrollmentEvent, Notifier } from './notifier.js';
import type { EnrollmentSchema } from './schema.js';

type Tx = Transaction<EnrollmentSchema>;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

export interface CertificateServiceOptions {
  ca: LoadedCa;
  store: Database<EnrollmentSchema>;
  /** Signs tokens issued through the API; verification keys come from `tokenKeys`. */
  tokenSigner: TokenSigner;
  /** The policy new tokens are issued under. */
  policy: LoadedPolicy;
  /** Earlier policies whose outstanding tokens are still honoured (none by default). */
  acceptPolicies?: LoadedPolicy[];
  /** SHA-256 (hex) of each admin API key; the keys themselves are never stored. */
  apiKeyHashes: string[];
  /** Validity of certificates issued to sites (default 30 days; renewal at two thirds). */
  siteValidityMs?: number;
  /** How far a poll timestamp may be from our clock. */
  proofWindowMs?: number;
  /** Delivers the notifications a policy asks for. */
  notifier?: Notifier;
  now?: () => Date;
}

export interface IssuedResponse {
  status: 'issued';
  name: string;
  type: CertType;
  role: string | null;
  certificate: string;
  chain: string;
  serial: string;
  fingerprint: string;
  notAfter: string;
}

export interface PendingResponse {
  status: 'pending';
  requestId: string;
  pollUrl: string;
  retryAfter: number;
}

export interface RequestRow {
  id: string;
  name: string;
  type: string;
  role: string | null;
  org: string | null;
  sourceIp: string | null;
  status: string;
  rule: string | null;
  reason: string | null;
  createdAt: string;
  decidedAt: string | null;
  decidedBy: string | null;
}

export interface EnrolledRow {
  name: string;
  type: string;
  role: string | null;
  serial: string;
  fingerprint: string;
  notAfter: string;
  issuedAt: string;
  approvedBy: string;
  revoked: boolean;
  revokedAt: string | null;
}

/** Token subject types → certificate types. */
const CERT_TYPE: Record<TokenClaims['pollen']['subject_type'], CertType> = {
  client: 'client',
  server: 'server',
  relay: 'relay',
  user: 'admin',
};

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/**
 * The Certificate Service's behaviour, independent of HTTP: token and CSR checks, policy
 * decisions, single-use consumption, issuance, approvals, revocation and the CRL.
 */
export class CertificateService {
  readonly ca: LoadedCa;
  private readonly store: Database<EnrollmentSchema>;
  private readonly batcher: WriteBatcher<EnrollmentSchema>;
  private readonly policies = new Map<string, LoadedPolicy>();
  private readonly apiKeyHashes: Buffer[];
  private readonly siteValidityMs: number;
  private readonly proofWindowMs: number;
  private readonly now: () => Date;
  get backend(): string {
    return this.store.backend;
  }

  private crlCache: { pem: string; until: number } | undefined;
  private readonly tokenKeys: Map<string, KeyObject>;

  private constructor(private readonly o: CertificateServiceOptions) {
    this.ca = o.ca;
    this.store = o.store;
    this.batcher = new WriteBatcher(o.store.db);
    this.apiKeyHashes = o.apiKeyHashes.map((h) => Buffer.from(h, 'hex'));
    this.siteValidityMs = o.siteValidityMs ?? 30 * DAY;
    this.proofWindowMs = o.proofWindowMs ?? 5 * 60_000;
    this.now = o.now ?? (() => new Date());
    this.tokenKeys = new Map([[o.tokenSigner.kid, o.tokenSigner.publicKey]]);
  }

  static async create(o: CertificateServiceOptions): Promise<CertificateService> {
    const s = new CertificateService(o);
    const { db } = o.store;
    // Only the policies configured for this run are honoured: a policy that is no longer
    // configured (say, the permissive built-in default) cannot be used to bypass a stricter one.
    for (const p of [o.policy, ...(o.acceptPolicies ?? [])]) {
      await db
        .insertInto('policies')
        .values({
          sha256: p.sha256,
          project: p.policy.metadata.project,
          version: p.policy.metadata.version,
          text: p.text,
          source: p.source,
          created_at: s.now().getTime(),
        })
        .onConflict((oc) => oc.column('sha256').doNothing())
        .execute();
      s.policies.set(p.sha256, p);
    }
    for (const row of await db.selectFrom('api_keys').select('sha256').execute())
      s.apiKeyHashes.push(Buffer.from(row.sha256, 'hex'));
    for (const p of [o.policy, ...(o.acceptPolicies ?? [])]) o.notifier?.check(p);
    if (s.apiKeyHashes.length === 0)
      throw new PollenError('API_KEY_REQUIRED', 'The Certificate Service needs at least one admin API key', {
        hint: 'Make one with `pollen cert api-key -o api_key.txt` and pass --api-key-file api_key.txt.',
      });
    return s;
  }

  // ---------------------------------------------------------------------------------------------
  // Admin authentication

  /** Check a Bearer API key in constant time; returns the actor name recorded on changes. */
  authenticate(header: string | undefined): string {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
    if (!m) throw new PollenError('API_KEY_REQUIRED', 'This call needs an admin API key');
    const digest = createHash('sha256').update(m[1]!).digest();
    let found: Buffer | undefined;
    for (const h of this.apiKeyHashes)
      if (h.length === digest.length && timingSafeEqual(h, digest)) found = h;
    if (!found) throw new PollenError('API_KEY_INVALID', 'The API key is not valid');
    return `api-key:${found.toString('hex').slice(0, 12)}`;
  }

  // ---------------------------------------------------------------------------------------------
  // Enrollment

  /** Enroll with a token and a CSR: issued now, pending approval, or refused. */
  async enroll(input: {
    token: unknown;
    csr: unknown;
    ip?: string;
  }): Promise<IssuedResponse | PendingResponse> {
    // The token is checked before anything else is looked at or looked up.
    if (typeof input.token !== 'string' || input.token.length > 8192)
      throw new PollenError('TOKEN_INVALID', 'The enrollment token is invalid');
    const now = this.now();
    const claims = verifyToken(input.token, { keys: this.tokenKeys, issuer: this.o.tokenSigner.issuer, now });
    const policy = this.policies.get(claims.pollen.policy.sha256);
    if (!policy)
      throw new PollenError(
        'TOKEN_INVALID',
        'The token was issued under a policy this service does not accept',
        {
          hint: 'Make tokens with the policy the service runs (`pollen token generate -p FILE`), or start the service with --accept-policy FILE for that policy.',
        },
      );
    if (claims.pollen.root_ca_fingerprint !== this.ca.rootFingerprint)
      throw new PollenError('TOKEN_INVALID', 'The enrollment token is invalid', {
        detail: 'root fingerprint differs',
      });
    const csr = checkCsr(input.csr);
    const name = claims.sub;
    if (csr.commonName !== name)
      throw new PollenError(
        'CSR_SUBJECT_MISMATCH',
        `The CSR common name must be '${name}', the token's subject`,
      );
    const decision = decide(policy.policy, { name, type: claims.pollen.subject_type, ip: input.ip });
    if (decision.action === 'reject')
      throw new PollenError('ENROLLMENT_REJECTED', "Enrollment refused by the project's policy", {
        detail: `rule ${decision.rule ?? '(none)'}: ${decision.reason}`,
        hint: 'Ask the project admin; `pollen policy explain POLICY --site NAME --ip ADDR` shows why.',
      });
    const consume = (tx: Tx) => this.consumeToken(tx, claims, now);
    try {
      return await this.admit(input, claims, csr, decision, policy, consume, now);
    } catch (e) {
      // A site whose answer was lost retries with the same token and the same key: give it
      // what the first attempt produced instead of refusing it as a token replay.
      if (e instanceof PollenError && e.code === 'TOKEN_USED') {
        const earlier = await this.sameKeyRetry(claims.jti, csr.spki);
        if (earlier) return earlier;
      }
      throw e;
    }
  }

  /** Store a pending request, or issue a certificate, consuming the token in the same transaction. */
  private async admit(
    input: { csr: unknown; ip?: string },
    claims: TokenClaims,
    csr: ReturnType<typeof checkCsr>,
    decision: ReturnType<typeof decide>,
    policy: LoadedPolicy,
    consume: (tx: Tx) => Promise<void>,
    now: Date,
  ): Promise<IssuedResponse | PendingResponse> {
    const name = claims.sub;
    const type = CERT_TYPE[claims.pollen.subject_type];
    const role = claims.pollen.roles[0] ?? null;
    if (decision.action === 'pending') {
      const id = `req_${randomBytes(16).toString('base64url')}`;
      await this.batcher.run(async (tx) => {
        await consume(tx);
        await tx
          .insertInto('requests')
          .values({
            id,
            name,
            type,
            role,
            org: null,
            source_ip: input.ip ?? null,
            status: 'pending',
            rule: decision.rule ?? null,
            reason: null,
            csr: input.csr as string,
            jti: claims.jti,
            policy_sha256: policy.sha256,
            created_at: now.getTime(),
            decided_at: null,
            decided_by: null,
            serial: null,
          })
          .execute();
        await this.audit(tx, `token:${claims.jti}`, 'request.pending', name, now, {
          requestId: id,
          type,
          rule: decision.rule ?? null,
          sourceIp: input.ip ?? null,
        });
      });
      this.notify(policy.sha256, {
        event: 'request.pending',
        requestId: id,
        name,
        type,
        sourceIp: input.ip ?? null,
        rule: decision.rule ?? null,
      });
      return { status: 'pending', requestId: id, pollUrl: `/v1/requests/${id}/status`, retryAfter: 10 };
    }

    const issued = this.sign(csr.spki, csr.keyInfo, { name, type, role: role ?? undefined }, now);
    await this.batcher.run(async (tx) => {
      await consume(tx);
      await this.refuseIfEnrolledElsewhere(tx, name, type, claims.jti, now);
      await tx
        .insertInto('certificates')
        .values(
          this.certRow(issued, { name, type, role }, `policy:${decision.rule ?? 'auto'}`, now, {
            jti: claims.jti,
          }),
        )
        .execute();
      await this.audit(tx, `token:${claims.jti}`, 'certificate.issued', name, now, {
        serial: issued.serial,
        type,
        role,
        rule: decision.rule ?? null,
        sourceIp: input.ip ?? null,
      });
    });
    return this.issuedResponse(issued, name, type, role);
  }

  /** What an earlier use of this token by the same key produced, if anything. */
  private async sameKeyRetry(
    jti: string,
    spki: Buffer,
  ): Promise<IssuedResponse | PendingResponse | undefined> {
    const db = this.store.db;
    const certs = await db
      .selectFrom('certificates')
      .selectAll()
      .where('jti', '=', jti)
      .where('revoked_at', 'is', null)
      .where('renewed_from', 'is', null)
      .execute();
    for (const c of certs) {
      const key = new X509Certificate(c.pem).publicKey.export({ type: 'spki', format: 'der' });
      if (key.equals(spki))
        return this.issuedResponse(
          { pem: c.pem, serial: c.serial, fingerprint: c.fingerprint, notAfter: new Date(c.not_after) },
          c.name,
          c.type as CertType,
          c.role,
        );
    }
    for (const r of await db.selectFrom('requests').selectAll().where('jti', '=', jti).execute()) {
      if (!checkCsr(r.csr).spki.equals(spki)) continue;
      if (r.status === 'pending')
        return { status: 'pending', requestId: r.id, pollUrl: `/v1/requests/${r.id}/status`, retryAfter: 10 };
      if (r.status === 'rejected')
        throw new PollenError(
          'ENROLLMENT_REJECTED',
          `Enrollment rejected: ${r.reason ?? 'no reason given'}`,
          {
            data: { requestId: r.id, reason: r.reason },
          },
        );
    }
    return undefined;
  }

  /** Consume one use of the token atomically; N concurrent uses of a single-use token → 1 success. */
  private async consumeToken(tx: Tx, claims: TokenClaims, now: Date): Promise<void> {
    const row = await tx
      .insertInto('token_uses')
      .values({
        jti: claims.jti,
        subject: claims.sub,
        uses: 1,
        max_uses: claims.pollen.max_uses,
        expires_at: claims.exp * 1000,
        last_used_at: now.getTime(),
      })
      .onConflict((oc) =>
        oc
          .column('jti')
          .doUpdateSet((eb) => ({ uses: eb('token_uses.uses', '+', 1), last_used_at: now.getTime() }))
          .where('token_uses.uses', '<', (eb) => eb.ref('token_uses.max_uses')),
      )
      .returning('uses')
      .executeTakeFirst();
    if (!row)
      throw new PollenError('TOKEN_USED', 'This enrollment token has already been used', {
        hint:
          claims.pollen.max_uses > 1
            ? `It allowed ${claims.pollen.max_uses} uses; ask the project admin for a new token.`
            : undefined,
      });
  }

  /** A site that holds a valid certificate from another token must be revoked before it enrolls again. */
  private async refuseIfEnrolledElsewhere(tx: Tx, name: string, type: string, jti: string, now: Date) {
    // Replicas sharing a PostgreSQL store serialise on the identity; SQLite has one writer anyway.
    if (this.store.backend === 'postgres')
      await sql`SELECT pg_advisory_xact_lock(hashtext(${`${type}:${name}`}))`.execute(tx);
    const active = await tx
      .selectFrom('certificates')
      .select(['serial', 'jti'])
      .where('name', '=', name)
      .where('type', '=', type)
      .where('revoked_at', 'is', null)
      .where('not_after', '>', now.getTime())
      .execute();
    if (active.some((c) => c.jti !== jti))
      throw new PollenError(
        'ALREADY_ENROLLED',
        `${type} '${name}' is already enrolled with a valid certificate`,
      );
  }

  private sign(
    spki: Buffer,
    keyInfo: ReturnType<typeof checkCsr>['keyInfo'],
    p: Omit<SiteProfile, 'project'>,
    now: Date,
  ) {
    return issueSiteCertificate(
      this.ca.issuer,
      spki,
      keyInfo,
      { ...p, project: this.ca.meta.name },
      this.siteValidityMs,
      now,
    );
  }

  private certRow(
    issued: ReturnType<typeof issueSiteCertificate>,
    p: { name: string; type: string; role: string | null },
    approvedBy: string,
    now: Date,
    extra: { jti?: string; requestId?: string; renewedFrom?: string },
  ): EnrollmentSchema['certificates'] {
    return {
      serial: issued.serial,
      name: p.name,
      type: p.type,
      role: p.role,
      fingerprint: issued.fingerprint,
      not_before: issued.notBefore.getTime(),
      not_after: issued.notAfter.getTime(),
      issued_at: now.getTime(),
      approved_by: approvedBy,
      request_id: extra.requestId ?? null,
      jti: extra.jti ?? null,
      renewed_from: extra.renewedFrom ?? null,
      superseded_by: null,
      pem: issued.pem,
      revoked_at: null,
      revoke_reason: null,
    };
  }

  private issuedResponse(
    issued: { pem: string; serial: string; fingerprint: string; notAfter: Date },
    name: string,
    type: CertType,
    role: string | null,
  ): IssuedResponse {
    return {
      status: 'issued',
      name,
      type,
      role,
      certificate: issued.pem,
      chain: this.ca.chainPem,
      serial: issued.serial,
      fingerprint: issued.fingerprint,
      notAfter: issued.notAfter.toISOString(),
    };
  }

  /** Poll a pending request, proving possession of the CSR's key. Unknown ids and bad proofs look alike. */
  async poll(input: {
    id: string;
    timestamp: unknown;
    signature: unknown;
  }): Promise<IssuedResponse | PendingResponse> {
    const bad = () => new PollenError('PROOF_INVALID', 'The proof of possession is not valid');
    if (
      typeof input.timestamp !== 'number' ||
      typeof input.signature !== 'string' ||
      input.signature.length > 2048
    )
      throw bad();
    if (Math.abs(this.now().getTime() - input.timestamp) > this.proofWindowMs)
      throw new PollenError('PROOF_INVALID', 'The proof timestamp is too far from the service clock', {
        hint: 'Check that clocks are synchronised.',
      });
    const row = await this.store.db
      .selectFrom('requests')
      .selectAll()
      .where('id', '=', input.id.slice(0, 64))
      .executeTakeFirst();
    if (!row) throw bad();
    const csr = checkCsr(row.csr);
    const hash = csr.keyInfo.kind === 'ec' && csr.keyInfo.curve === 'P-384' ? 'sha384' : 'sha256';
    const message = Buffer.from(`pollen-poll:v1:${row.id}:${input.timestamp}`);
    let ok = false;
    try {
      ok = verify(
        hash,
        message,
        { key: createPublicKey({ key: csr.spki, format: 'der', type: 'spki' }), dsaEncoding: 'der' },
        Buffer.from(input.signature, 'base64'),
      );
    } catch {
      ok = false;
    }
    if (!ok) throw bad();
    if (row.status === 'pending')
      return {
        status: 'pending',
        requestId: row.id,
        pollUrl: `/v1/requests/${row.id}/status`,
        retryAfter: 10,
      };
    if (row.status === 'rejected')
      throw new PollenError(
        'ENROLLMENT_REJECTED',
        `Enrollment rejected: ${row.reason ?? 'no reason given'}`,
        {
          data: { requestId: row.id, reason: row.reason },
        },
      );
    const cert = await this.store.db
      .selectFrom('certificates')
      .selectAll()
      .where('serial', '=', row.serial!)
      .executeTakeFirstOrThrow();
    return this.issuedResponse(
      {
        pem: cert.pem,
        serial: cert.serial,
        fingerprint: cert.fingerprint,
        notAfter: new Date(cert.not_after),
      },
      cert.name,
      cert.type as CertType,
      cert.role,
    );
  }

  /** Renew over mTLS: the presented (verified) certificate names the site; the CSR brings the new key. */
  /**
   * Renew over mTLS. `peerChain` is what the client presented (leaf first); it must chain to the
   * project root and be a current certificate of ours. Each certificate renews once: the renewal
   * supersedes it in the same transaction. A retry with the same new key gets the same answer.
   */
  async renew(input: { peerChain: string[]; csr: unknown }): Promise<IssuedResponse> {
    const [leaf, ...rest] = input.peerChain;
    if (!leaf)
      throw new PollenError('FORBIDDEN', 'Renewal needs the current certificate as a TLS client certificate');
    if (!verifyChain(leaf, `${rest.join('')}${this.ca.intermediatePem}\n`, this.ca.rootPem, this.now()))
      throw new PollenError(
        'FORBIDDEN',
        'The presented certificate is not a valid certificate of this project',
      );
    const peerSerial = new X509Certificate(leaf).serialNumber.toLowerCase();
    const now = this.now();
    const current = await this.store.db
      .selectFrom('certificates')
      .selectAll()
      .where('serial', '=', peerSerial)
      .executeTakeFirst();
    if (!current)
      throw new PollenError('NOT_ENROLLED', 'The presented certificate was not issued by this service');
    if (current.revoked_at !== null)
      throw new PollenError('CERT_REVOKED', 'The presented certificate is revoked');
    if (current.not_after <= now.getTime())
      throw new PollenError('CERT_EXPIRED', 'The presented certificate has expired');
    const csr = checkCsr(input.csr);
    if (csr.commonName !== current.name)
      throw new PollenError('CSR_SUBJECT_MISMATCH', `The CSR common name must be '${current.name}'`);
    const type = current.type as CertType;
    const superseded = () =>
      new PollenError('CERT_SUPERSEDED', 'The presented certificate was already renewed', {
        hint: 'Use the renewed certificate; a certificate renews only once.',
      });
    if (current.superseded_by) {
      const next = await this.store.db
        .selectFrom('certificates')
        .selectAll()
        .where('serial', '=', current.superseded_by)
        .executeTakeFirst();
      const sameKey =
        next &&
        new X509Certificate(next.pem).publicKey.export({ type: 'spki', format: 'der' }).equals(csr.spki);
      if (next && sameKey && next.revoked_at === null)
        return this.issuedResponse(
          {
            pem: next.pem,
            serial: next.serial,
            fingerprint: next.fingerprint,
            notAfter: new Date(next.not_after),
          },
          next.name,
          type,
          next.role,
        );
      throw superseded();
    }
    const issued = this.sign(
      csr.spki,
      csr.keyInfo,
      { name: current.name, type, role: current.role ?? undefined },
      now,
    );
    await this.batcher.run(async (tx) => {
      const claimed = await tx
        .updateTable('certificates')
        .set({ superseded_by: issued.serial })
        .where('serial', '=', current.serial)
        .where('superseded_by', 'is', null)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      if (Number(claimed.numUpdatedRows) !== 1) throw superseded();
      await tx
        .insertInto('certificates')
        .values(
          this.certRow(issued, current, `renewal:${current.serial}`, now, {
            jti: current.jti ?? undefined,
            renewedFrom: current.serial,
          }),
        )
        .execute();
      await this.audit(tx, `certificate:${current.serial}`, 'certificate.renewed', current.name, now, {
        serial: issued.serial,
        from: current.serial,
      });
    });
    return this.issuedResponse(issued, current.name, type, current.role);
  }

  // ---------------------------------------------------------------------------------------------
  // Administration

  async issueTokens(input: { subjects: unknown; type?: unknown; role?: unknown }, actor: string) {
    const subjects = input.subjects;
    if (
      !Array.isArray(subjects) ||
      subjects.length === 0 ||
      subjects.length > 10_000 ||
      !subjects.every((s) => typeof s === 'string')
    )
      throw new PollenError('INVALID_REQUEST', '`subjects` must be a list of 1 to 10000 names');
    const type = (input.type ?? 'client') as string;
    if (!['client', 'server', 'relay', 'user'].includes(type))
      throw new PollenError('INVALID_REQUEST', '`type` must be client, server, relay or user');
    if (input.role !== undefined && typeof input.role !== 'string')
      throw new PollenError('INVALID_REQUEST', '`role` must be a string');
    const tokens = await issueTokens(this.o.tokenSigner, subjects as string[], {
      type: type as TokenClaims['pollen']['subject_type'],
      role: input.role as string | undefined,
      policy: this.o.policy,
      now: this.now(),
    });
    const now = this.now();
    await this.batcher.run((tx) =>
      this.audit(
        tx,
        actor,
        'tokens.issued',
        tokens.length === 1 ? tokens[0]!.claims.sub : `${tokens.length} subjects`,
        now,
        {
          count: tokens.length,
          type,
          subjects: tokens.slice(0, 100).map((t) => t.claims.sub),
          tokenIds: tokens.slice(0, 100).map((t) => t.claims.jti),
        },
      ),
    );
    return {
      tokens: tokens.map((t) => ({
        subject: t.claims.sub,
        token: t.token,
        tokenId: t.claims.jti,
        subjectType: t.claims.pollen.subject_type,
        expiresAt: new Date(t.claims.exp * 1000).toISOString(),
      })),
    };
  }

  async listRequests(status?: string): Promise<RequestRow[]> {
    let q = this.store.db.selectFrom('requests').selectAll().orderBy('created_at');
    if (status && status !== 'all') {
      if (!['pending', 'approved', 'rejected'].includes(status))
        throw new PollenError('INVALID_REQUEST', '`status` must be pending, approved, rejected or all');
      q = q.where('status', '=', status as 'pending');
    }
    return (await q.execute()).map((r) => ({
      id: r.id,
      name: r.name,
      type: r.type,
      role: r.role,
      org: r.org,
      sourceIp: r.source_ip,
      status: r.status,
      rule: r.rule,
      reason: r.reason,
      createdAt: iso(r.created_at)!,
      decidedAt: iso(r.decided_at),
      decidedBy: r.decided_by,
    }));
  }

  /** Pending requests selected by id, name or pattern (and type); nothing selected is an error. */
  private async selectPending(sel: { names?: unknown; pattern?: unknown; type?: unknown }) {
    const names = sel.names === undefined ? [] : sel.names;
    if (!Array.isArray(names) || !names.every((n) => typeof n === 'string'))
      throw new PollenError('INVALID_REQUEST', '`names` must be a list of names or request ids');
    if (sel.pattern !== undefined && typeof sel.pattern !== 'string')
      throw new PollenError('INVALID_REQUEST', '`pattern` must be a string');
    if (sel.type !== undefined && typeof sel.type !== 'string')
      throw new PollenError('INVALID_REQUEST', '`type` must be a string');
    if (names.length === 0 && !sel.pattern)
      throw new PollenError('INVALID_REQUEST', 'Give names (or request ids) or a pattern');
    const type = sel.type === 'user' ? 'admin' : (sel.type as string | undefined);
    const pending = await this.store.db
      .selectFrom('requests')
      .selectAll()
      .where('status', '=', 'pending')
      .execute();
    const chosen = pending.filter(
      (r) =>
        (!type || r.type === type) &&
        ((names as string[]).some((n) => n === r.name || n === r.id) ||
          (typeof sel.pattern === 'string' && matchNamePattern(sel.pattern, r.name))),
    );
    for (const n of names as string[])
      if (!chosen.some((r) => r.name === n || r.id === n)) {
        const held = await heldDecision(this.store.db, n);
        if (held && (!type || held.type === type)) throw alreadyDecided([held]);
        throw new PollenError(
          'REQUEST_NOT_FOUND',
          `No pending request for '${n}'${type ? ` of type ${type}` : ''}`,
        );
      }
    return chosen;
  }

  /**
   * Approve the selected pending requests, each in its own transaction. A request another admin
   * decided meanwhile is left as decided and listed in `alreadyDecided`; if that befell every
   * selected request, the call fails with REQUEST_ALREADY_DECIDED naming the decision that holds.
   */
  async approve(sel: { names?: unknown; pattern?: unknown; type?: unknown }, actor: string) {
    const chosen = await this.selectPending(sel);
    const now = this.now();
    const approved: { id: string; name: string; type: string; serial: string }[] = [];
    const lost: HeldDecision[] = [];
    for (const r of chosen) {
      const csr = checkCsr(r.csr);
      const issued = this.sign(
        csr.spki,
        csr.keyInfo,
        { name: r.name, type: r.type as CertType, role: r.role ?? undefined },
        now,
      );
      try {
        await this.batcher.run(async (tx) => {
          await claimDecision(tx, r.id, {
            status: 'approved',
            decided_at: now.getTime(),
            decided_by: actor,
            serial: issued.serial,
          });
          await this.refuseIfEnrolledElsewhere(tx, r.name, r.type, r.jti, now);
          await tx
            .insertInto('certificates')
            .values(this.certRow(issued, r, actor, now, { jti: r.jti, requestId: r.id }))
            .execute();
          await this.audit(tx, actor, 'request.approved', r.name, now, {
            requestId: r.id,
            serial: issued.serial,
          });
        });
      } catch (e) {
        if (!isAlreadyDecided(e)) throw e;
        lost.push(e.data as unknown as HeldDecision);
        continue;
      }
      approved.push({ id: r.id, name: r.name, type: r.type, serial: issued.serial });
      this.notify(r.policy_sha256, {
        event: 'request.approved',
        requestId: r.id,
        name: r.name,
        type: r.type,
        actor,
      });
    }
    if (approved.length === 0 && lost.length > 0) throw alreadyDecided(lost);
    return lost.length > 0 ? { approved, alreadyDecided: lost } : { approved };
  }

  /** Reject the selected pending requests; one decision per request, as `approve`. */
  async reject(sel: { names?: unknown; pattern?: unknown; type?: unknown; reason?: unknown }, actor: string) {
    if (sel.reason !== undefined && (typeof sel.reason !== 'string' || sel.reason.length > 1000))
      throw new PollenError('INVALID_REQUEST', '`reason` must be a string of at most 1000 characters');
    const chosen = await this.selectPending(sel);
    const now = this.now();
    const reason = (sel.reason as string | undefined) ?? 'rejected by an administrator';
    const lost: HeldDecision[] = [];
    const rejected = await this.batcher.run(async (tx) => {
      const won: typeof chosen = [];
      for (const r of chosen) {
        try {
          await claimDecision(tx, r.id, {
            status: 'rejected',
            decided_at: now.getTime(),
            decided_by: actor,
            reason,
          });
        } catch (e) {
          if (!isAlreadyDecided(e)) throw e;
          lost.push(e.data as unknown as HeldDecision);
          continue;
        }
        await this.audit(tx, actor, 'request.rejected', r.name, now, { requestId: r.id, reason });
        won.push(r);
      }
      return won;
    });
    if (rejected.length === 0 && lost.length > 0) throw alreadyDecided(lost);
    for (const r of rejected)
      this.notify(r.policy_sha256, {
        event: 'request.rejected',
        requestId: r.id,
        name: r.name,
        type: r.type,
        actor,
        reason,
      });
    const list = rejected.map((r) => ({ id: r.id, name: r.name, type: r.type, reason }));
    return lost.length > 0 ? { rejected: list, alreadyDecided: lost } : { rejected: list };
  }

  async listEnrolled(type?: string): Promise<EnrolledRow[]> {
    let q = this.store.db.selectFrom('certificates').selectAll().orderBy('issued_at');
    if (type) q = q.where('type', '=', type === 'user' ? 'admin' : type);
    return (await q.execute()).map((c) => ({
      name: c.name,
      type: c.type,
      role: c.role,
      serial: c.serial,
      fingerprint: c.fingerprint,
      notAfter: iso(c.not_after)!,
      issuedAt: iso(c.issued_at)!,
      approvedBy: c.approved_by,
      revoked: c.revoked_at !== null,
      revokedAt: iso(c.revoked_at),
    }));
  }

  async revoke(sel: { names?: unknown; serials?: unknown; reason?: unknown }, actor: string) {
    const names = (sel.names ?? []) as unknown[];
    const serials = (sel.serials ?? []) as unknown[];
    if (
      !Array.isArray(names) ||
      !Array.isArray(serials) ||
      ![...names, ...serials].every((v) => typeof v === 'string')
    )
      throw new PollenError('INVALID_REQUEST', '`names` and `serials` must be lists of strings');
    if (names.length + serials.length === 0)
      throw new PollenError('INVALID_REQUEST', 'Give names or serials to revoke');
    if (sel.reason !== undefined && (typeof sel.reason !== 'string' || sel.reason.length > 200))
      throw new PollenError('INVALID_REQUEST', '`reason` must be a string of at most 200 characters');
    const reason = (sel.reason as string | undefined) ?? 'unspecified';
    const now = this.now().getTime();
    const rows = await this.store.db
      .selectFrom('certificates')
      .select(['serial', 'name'])
      .where('revoked_at', 'is', null)
      .where((eb) =>
        eb.or([
          ...(names.length ? [eb('name', 'in', names as string[])] : []),
          ...(serials.length
            ? [
                eb(
                  'serial',
                  'in',
                  (serials as string[]).map((s) => s.toLowerCase().replaceAll(':', '')),
                ),
              ]
            : []),
        ]),
      )
      .execute();
    if (rows.length === 0) throw new PollenError('NOT_ENROLLED', 'No valid certificate matches');
    // A revoked certificate takes its renewals with it: they carry the same, now untrusted, identity.
    for (let frontier = rows.map((r) => r.serial); frontier.length > 0; ) {
      const next = await this.store.db
        .selectFrom('certificates')
        .select(['serial', 'name'])
        .where('renewed_from', 'in', frontier)
        .where('revoked_at', 'is', null)
        .execute();
      const fresh = next.filter((n) => !rows.some((r) => r.serial === n.serial));
      rows.push(...fresh);
      frontier = fresh.map((n) => n.serial);
    }
    await this.batcher.run(async (tx) => {
      await tx
        .updateTable('certificates')
        .set({ revoked_at: now, revoke_reason: `${reason} (by ${actor})` })
        .where(
          'serial',
          'in',
          rows.map((r) => r.serial),
        )
        .execute();
      for (const r of rows)
        await this.audit(tx, actor, 'certificate.revoked', r.name, new Date(now), {
          serial: r.serial,
          reason,
        });
    });
    this.crlCache = undefined;
    return { revoked: rows };
  }

  async isRevoked(serial: string): Promise<boolean> {
    const row = await this.store.db
      .selectFrom('certificates')
      .select('revoked_at')
      .where('serial', '=', serial.toLowerCase())
      .executeTakeFirst();
    return row?.revoked_at != null;
  }

  /** The current CRL, re-signed when something was revoked or it is half-way to its nextUpdate. */
  async crl(): Promise<string> {
    const now = this.now().getTime();
    if (this.crlCache && this.crlCache.until > now) return this.crlCache.pem;
    const revoked = await this.store.db
      .selectFrom('certificates')
      .select(['serial', 'revoked_at'])
      .where('revoked_at', 'is not', null)
      .where('not_after', '>', now)
      .execute();
    const pem = await createCrl(
      this.ca.issuer,
      revoked.map((r) => ({ serial: r.serial, revokedAt: new Date(r.revoked_at!) })),
      new Date(now),
      DAY,
    );
    // Re-read at most a minute later, so revocations made by another replica show up quickly.
    this.crlCache = { pem, until: now + 60_000 };
    return pem;
  }

  /** Keep storage bounded: forget used tokens after they expire, old decided requests, long-expired certificates. */
  async tidy(retainMs = 30 * DAY): Promise<{ tokens: number; requests: number; certificates: number }> {
    const now = this.now().getTime();
    const db = this.store.db;
    const tokens = await db
      .deleteFrom('token_uses')
      .where('expires_at', '<', now - DAY)
      .executeTakeFirst();
    const requests = await db
      .deleteFrom('requests')
      .where('status', '!=', 'pending')
      .where('decided_at', '<', now - retainMs)
      .executeTakeFirst();
    const certificates = await db
      .deleteFrom('certificates')
      .where('not_after', '<', now - retainMs)
      .executeTakeFirst();
    return {
      tokens: Number(tokens.numDeletedRows),
      requests: Number(requests.numDeletedRows),
      certificates: Number(certificates.numDeletedRows),
    };
  }

  private notify(policySha: string, e: Omit<EnrollmentEvent, 'project' | 'at'>): void {
    const policy = this.policies.get(policySha);
    if (!policy || !this.o.notifier || !policy.policy.notifications.enabled) return;
    this.o.notifier.notify(policy, {
      ...e,
      project: policy.policy.metadata.project,
      at: this.now().toISOString(),
    });
  }

  /** Wait for notifications still being delivered (on shutdown). */
  async drain(): Promise<void> {
    await this.o.notifier?.drain();
  }

  /** Append to the hash-chained audit log, inside the transaction that makes the change. */
  private async audit(
    tx: Tx,
    actor: string,
    action: string,
    subject: string,
    at: Date,
    detail: Record<string, unknown>,
  ) {
    // Replicas on one PostgreSQL database take turns at the end of the chain.
    if (this.store.backend === 'postgres') await sql`SELECT pg_advisory_xact_lock(7268455)`.execute(tx);
    const last = await tx
      .selectFrom('audit')
      .select(['seq', 'hash'])
      .orderBy('seq', 'desc')
      .limit(1)
      .executeTakeFirst();
    const prev = last ? { seq: Number(last.seq), hash: last.hash } : { seq: 0, hash: AUDIT_GENESIS };
    const entry = { seq: prev.seq + 1, at: at.toISOString(), actor, action, subject, detail };
    await tx
      .insertInto('audit')
      .values({
        seq: entry.seq,
        at: at.getTime(),
        actor,
        action,
        subject,
        detail: JSON.stringify(detail),
        prev_hash: prev.hash,
        hash: auditHash(prev.hash, entry),
      })
      .execute();
  }

  /** Audit entries after `after` (a sequence number), oldest first. */
  async listAudit(after = 0, limit = 1000): Promise<AuditEntry[]> {
    if (!Number.isInteger(after) || after < 0 || !Number.isInteger(limit) || limit < 1 || limit > 10_000)
      throw new PollenError('INVALID_REQUEST', '`after` must be a sequence number and `limit` 1-10000');
    const rows = await this.store.db
      .selectFrom('audit')
      .selectAll()
      .where('seq', '>', after)
      .orderBy('seq')
      .limit(limit)
      .execute();
    return rows.map((r) => ({
      seq: Number(r.seq),
      at: new Date(r.at).toISOString(),
      actor: r.actor,
      action: r.action,
      subject: r.subject,
      detail: JSON.parse(r.detail) as Record<string, unknown>,
      prevHash: r.prev_hash,
      hash: r.hash,
    }));
  }

  caInfo() {
    return {
      root: this.ca.rootPem,
      intermediate: this.ca.intermediatePem,
      chain: this.ca.chainPem,
      rootFingerprint: this.ca.rootFingerprint,
    };
  }
}
