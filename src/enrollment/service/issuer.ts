import { sql } from 'kysely';
import { PollenError } from '../../errors.js';
import type { LoadedCa } from '../../pki/ca.js';
import type { CheckedCsr } from '../../pki/csr.js';
import { type CertType, issueSiteCertificate, type SiteProfile } from '../../pki/profiles.js';
import type { Database } from '../../store/database.js';
import type { Tx } from './context.js';
import type { EnrollmentSchema } from './schema.js';

/** A certificate as the enroll, poll and renew calls answer it. */
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

/** A request waiting for an admin; the HTTP edge adds the URL to poll it at. */
export interface PendingResponse {
  status: 'pending';
  requestId: string;
  /** Seconds a site should wait before it polls. */
  retryAfter: number;
}

export type CertificateRow = EnrollmentSchema['certificates'];
type Issued = ReturnType<typeof issueSiteCertificate>;

/**
 * Signs site certificates with the online intermediate from authoritative data (the token's or
 * the stored certificate's name, type and role; only the key comes from the CSR), and turns them
 * into stored rows and answers.
 */
export class CertificateIssuer {
  constructor(
    /** Read at each signature: a reload of the CA folder (an intermediate rotation) takes effect at once. */
    private readonly current: { readonly ca: LoadedCa },
    private readonly store: Database<EnrollmentSchema>,
    /** Validity of certificates issued to sites (renewal at two thirds). */
    private readonly validityMs: number,
  ) {}

  private get ca(): LoadedCa {
    return this.current.ca;
  }

  sign(csr: Pick<CheckedCsr, 'spki' | 'keyInfo'>, p: Omit<SiteProfile, 'project'>, now: Date): Issued {
    return issueSiteCertificate(
      this.ca.issuer,
      csr.spki,
      csr.keyInfo,
      { ...p, project: this.ca.meta.name },
      this.validityMs,
      now,
    );
  }

  row(
    issued: Issued,
    p: { name: string; type: string; role: string | null; org?: string | null },
    approvedBy: string,
    now: Date,
    extra: { jti?: string; requestId?: string; renewedFrom?: string },
  ): CertificateRow {
    return {
      serial: issued.serial,
      name: p.name,
      type: p.type,
      role: p.role,
      org: p.org ?? null,
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

  /** The answer for a certificate just signed. */
  response(issued: Issued, name: string, type: CertType, role: string | null): IssuedResponse {
    return this.answer(issued.pem, issued.serial, issued.fingerprint, issued.notAfter, { name, type, role });
  }

  /** The answer for a stored certificate (a retry, a poll after approval). */
  stored(c: CertificateRow): IssuedResponse {
    return this.answer(c.pem, c.serial, c.fingerprint, new Date(c.not_after), {
      name: c.name,
      type: c.type as CertType,
      role: c.role,
    });
  }

  private answer(
    pem: string,
    serial: string,
    fingerprint: string,
    notAfter: Date,
    p: { name: string; type: CertType; role: string | null },
  ): IssuedResponse {
    return {
      status: 'issued',
      ...p,
      certificate: pem,
      chain: this.ca.chainPem,
      serial,
      fingerprint,
      notAfter: notAfter.toISOString(),
    };
  }

  /** A site that holds a valid certificate from another token must be revoked before it enrolls again. */
  async refuseIfEnrolledElsewhere(tx: Tx, name: string, type: string, jti: string, now: Date): Promise<void> {
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
}
