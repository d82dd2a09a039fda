import { createPublicKey, type KeyObject, randomBytes, verify, X509Certificate } from 'node:crypto';
import { type AuditActor, change } from '../../audit/entry.js';
import { PollenError } from '../../errors.js';
import { type CheckedCsr, checkCsr } from '../../pki/csr.js';
import type { CertType } from '../../pki/profiles.js';
import { decide, type LoadedPolicy } from '../policy.js';
import { checkTokenOrg, type TokenClaims, type TokenSigner, verifyToken } from '../token.js';
import type { ServiceContext, Tx } from './context.js';
import type { CertificateIssuer, IssuedResponse, PendingResponse } from './issuer.js';

/** Token subject types → certificate types. */
const CERT_TYPE: Record<TokenClaims['pollen']['subject_type'], CertType> = {
  client: 'client',
  server: 'server',
  relay: 'relay',
  user: 'admin',
};

/** Seconds a pending site is asked to wait between polls. */
const RETRY_AFTER_S = 10;

/** A verified enrollment token and the policy it was issued under. */
export interface TokenAuth {
  claims: TokenClaims;
  policy: LoadedPolicy;
}

const pending = (requestId: string): PendingResponse => ({
  status: 'pending',
  requestId,
  retryAfter: RETRY_AFTER_S,
});

/**
 * Enrollment with a token: the token is verified first, then the CSR, then the policy decides;
 * the token is consumed in the transaction that stores the certificate or the pending request.
 * Pending requests are polled with a proof of possession of the CSR's key.
 */
export class Enrollment {
  private tokenKeys: ReadonlyMap<string, KeyObject>;

  constructor(
    private readonly c: ServiceContext,
    private readonly issuer: CertificateIssuer,
    private tokenSigner: TokenSigner,
    /** How far a poll timestamp may be from our clock. */
    private readonly proofWindowMs: number,
  ) {
    this.tokenKeys = new Map([[tokenSigner.kid, tokenSigner.publicKey]]);
  }

  /** Verify with these keys from now on: the current signer's and retired ones by kid. */
  useTokenKeys(signer: TokenSigner, retired: ReadonlyMap<string, KeyObject>): void {
    this.tokenSigner = signer;
    this.tokenKeys = new Map([...retired, [signer.kid, signer.publicKey]]);
  }

  /** Verify an enrollment token; nothing else of the request is looked at or looked up before. */
  authenticate(token: string): TokenAuth {
    const claims = verifyToken(token, {
      keys: this.tokenKeys,
      issuer: this.tokenSigner.issuer,
      now: this.c.now(),
    });
    const policy = this.c.policies.get(claims.pollen.policy.sha256);
    if (!policy)
      throw new PollenError(
        'TOKEN_INVALID',
        'The token was issued under a policy this service does not accept',
        {
          hint: 'Make tokens with the policy the service runs (`pollen token generate -p FILE`), or start the service with --accept-policy FILE for that policy.',
        },
      );
    if (claims.pollen.root_ca_fingerprint !== this.c.ca.rootFingerprint)
      throw new PollenError('TOKEN_INVALID', 'The enrollment token is invalid', {
        detail: 'root fingerprint differs',
      });
    return { claims, policy };
  }

  /** Enroll with a verified token and a CSR: issued now, pending approval, or refused. */
  async enroll(auth: TokenAuth, csrPem: string, ip?: string): Promise<IssuedResponse | PendingResponse> {
    const { claims } = auth;
    const csr = checkCsr(csrPem);
    const name = claims.sub;
    if (csr.commonName !== name)
      throw new PollenError(
        'CSR_SUBJECT_MISMATCH',
        `The CSR common name must be '${name}', the token's subject`,
      );
    // The token's hosts are checked again here, under the policy it was issued with: whoever holds
    // the token key cannot put a host in a certificate that the policy does not allow.
    const hosts = claims.pollen.hosts ?? [];
    // Likewise its organisation, under the policy's `orgs`.
    checkTokenOrg(auth.policy.policy, claims.pollen.org, auth.policy.source);
    const decision = decide(auth.policy.policy, { name, type: claims.pollen.subject_type, ip, hosts });
    if (decision.action === 'reject')
      throw new PollenError('ENROLLMENT_REJECTED', "Enrollment refused by the project's policy", {
        detail: `rule ${decision.rule ?? '(none)'}: ${decision.reason}`,
        hint: 'Ask the project admin; `pollen policy explain POLICY --site NAME --ip ADDR` shows why.',
      });
    const now = this.c.now();
    const admission = { auth, csr, csrPem, rule: decision.rule ?? null, ip: ip ?? null, now };
    try {
      return decision.action === 'pending' ? await this.hold(admission) : await this.issue(admission);
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

  /** Store a pending request, consuming the token in the same transaction. */
  private async hold(a: Admission): Promise<PendingResponse> {
    const { claims } = a.auth;
    const name = claims.sub;
    const type = CERT_TYPE[claims.pollen.subject_type];
    const id = `req_${randomBytes(16).toString('base64url')}`;
    await this.c.batcher.run(async (tx) => {
      await this.consumeToken(tx, claims, a.now);
      await tx
        .insertInto('requests')
        .values({
          id,
          name,
          type,
          role: claims.pollen.roles[0] ?? null,
          org: claims.pollen.org ?? null,
          source_ip: a.ip,
          status: 'pending',
          rule: a.rule,
          reason: null,
          csr: a.csrPem,
          jti: claims.jti,
          policy_sha256: a.auth.policy.sha256,
          created_at: a.now.getTime(),
          decided_at: null,
          decided_by: null,
          serial: null,
          hosts: claims.pollen.hosts ? JSON.stringify(claims.pollen.hosts) : null,
        })
        .execute();
      await this.c.audit.append(
        tx,
        change(tokenActor(claims.jti, claims.pollen.org, a.ip), 'request.pending', name, a.now, {
          requestId: id,
          type,
          ...(claims.pollen.org !== undefined && { org: claims.pollen.org }),
          ...(claims.pollen.hosts && { hosts: claims.pollen.hosts }),
          rule: a.rule,
          sourceIp: a.ip,
        }),
      );
    });
    this.c.policies.notify(a.auth.policy.sha256, {
      event: 'request.pending',
      requestId: id,
      name,
      type,
      sourceIp: a.ip,
      rule: a.rule,
    });
    return pending(id);
  }

  /** Issue a certificate, consuming the token in the same transaction. */
  private async issue(a: Admission): Promise<IssuedResponse> {
    const { claims } = a.auth;
    const name = claims.sub;
    const type = CERT_TYPE[claims.pollen.subject_type];
    const role = claims.pollen.roles[0] ?? null;
    const hosts = claims.pollen.hosts;
    const org = claims.pollen.org ?? null;
    const issued = this.issuer.sign(
      a.csr,
      { name, type, role: role ?? undefined, org: org ?? undefined, hosts },
      a.now,
    );
    await this.c.batcher.run(async (tx) => {
      await this.consumeToken(tx, claims, a.now);
      await this.issuer.refuseIfEnrolledElsewhere(tx, name, type, claims.jti, a.now);
      await tx
        .insertInto('certificates')
        .values(
          this.issuer.row(issued, { name, type, role, org }, `policy:${a.rule ?? 'auto'}`, a.now, {
            jti: claims.jti,
          }),
        )
        .execute();
      await this.c.audit.append(
        tx,
        change(tokenActor(claims.jti, org, a.ip), 'certificate.issued', name, a.now, {
          serial: issued.serial,
          type,
          role,
          ...(org !== null && { org }),
          ...(hosts && { hosts }),
          rule: a.rule,
          sourceIp: a.ip,
        }),
      );
    });
    return this.issuer.response(issued, name, type, role);
  }

  /** What an earlier use of this token by the same key produced, if anything. */
  private async sameKeyRetry(
    jti: string,
    spki: Buffer,
  ): Promise<IssuedResponse | PendingResponse | undefined> {
    const db = this.c.store.db;
    const certs = await db
      .selectFrom('certificates')
      .selectAll()
      .where('jti', '=', jti)
      .where('revoked_at', 'is', null)
      .where('renewed_from', 'is', null)
      .execute();
    for (const c of certs) {
      const key = new X509Certificate(c.pem).publicKey.export({ type: 'spki', format: 'der' });
      if (key.equals(spki)) return this.issuer.stored(c);
    }
    for (const r of await db.selectFrom('requests').selectAll().where('jti', '=', jti).execute()) {
      if (!checkCsr(r.csr).spki.equals(spki)) continue;
      if (r.status === 'pending') return pending(r.id);
      if (r.status === 'rejected') throw rejected(r.id, r.reason);
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

  /**
   * Poll a pending request, proving possession of the CSR's key over `pollen-poll:v1:ID:TIMESTAMP`.
   * Unknown ids and bad proofs look alike.
   */
  async poll(id: string, timestamp: number, signature: string): Promise<IssuedResponse | PendingResponse> {
    if (Math.abs(this.c.now().getTime() - timestamp) > this.proofWindowMs)
      throw new PollenError('PROOF_INVALID', 'The proof timestamp is too far from the service clock', {
        hint: 'Check that clocks are synchronised.',
      });
    const row = await this.c.store.db
      .selectFrom('requests')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row || !provesPossession(checkCsr(row.csr), `pollen-poll:v1:${row.id}:${timestamp}`, signature))
      throw badProof();
    if (row.status === 'pending') return pending(row.id);
    if (row.status === 'rejected') throw rejected(row.id, row.reason);
    const cert = await this.c.store.db
      .selectFrom('certificates')
      .selectAll()
      .where('serial', '=', row.serial!)
      .executeTakeFirstOrThrow();
    return this.issuer.stored(cert);
  }
}

interface Admission {
  auth: TokenAuth;
  csr: CheckedCsr;
  csrPem: string;
  rule: string | null;
  ip: string | null;
  now: Date;
}

/** The one answer to a poll whose id or proof is wrong (also given for a malformed proof). */
export const badProof = () => new PollenError('PROOF_INVALID', 'The proof of possession is not valid');

function provesPossession(csr: CheckedCsr, message: string, signature: string): boolean {
  const hash = csr.keyInfo.kind === 'ec' && csr.keyInfo.curve === 'P-384' ? 'sha384' : 'sha256';
  try {
    return verify(
      hash,
      Buffer.from(message),
      { key: createPublicKey({ key: csr.spki, format: 'der', type: 'spki' }), dsaEncoding: 'der' },
      Buffer.from(signature, 'base64'),
    );
  } catch {
    return false;
  }
}

function rejected(requestId: string, reason: string | null): PollenError {
  return new PollenError('ENROLLMENT_REJECTED', `Enrollment rejected: ${reason ?? 'no reason given'}`, {
    data: { requestId, reason },
  });
}

/** A site enrolling with a token: recorded as the token (`token:JTI`), from its address. */
function tokenActor(jti: string, org: string | null | undefined, ip: string | null): AuditActor {
  return { subject: `token:${jti}`, org: org ?? null, auth: 'enrollment_token', address: ip };
}
