import { X509Certificate } from 'node:crypto';
import { type AuditActor, actorLabel, change } from '../../audit/entry.js';
import { PollenError } from '../../errors.js';
import { createCrls } from '../../pki/crl.js';
import { hostsOfCertificate } from '../../pki/names.js';
import { DAY, iso, type OrgGuard, type ServiceContext } from './context.js';

export interface EnrolledRow {
  name: string;
  type: string;
  role: string | null;
  /** The organisation it names (`O=`); null: none. */
  org: string | null;
  serial: string;
  fingerprint: string;
  notAfter: string;
  issuedAt: string;
  approvedBy: string;
  revoked: boolean;
  revokedAt: string | null;
  /** Servers and relays: the DNS names and IP addresses the certificate names. */
  hosts: string[];
}

/** How long a signed CRL is served before it is re-read (so other replicas' revocations show). */
const CRL_CACHE_MS = 60_000;

/** The register of issued certificates: listing, revocation and the CRL. */
export class Certificates {
  private crlCache: { pem: string; until: number } | undefined;

  constructor(private readonly c: ServiceContext) {}

  /** Every stored certificate (of one type: `user` means `admin`), oldest first. */
  async list(type?: string): Promise<EnrolledRow[]> {
    let q = this.c.store.db.selectFrom('certificates').selectAll().orderBy('issued_at');
    if (type) q = q.where('type', '=', type === 'user' ? 'admin' : type);
    return (await q.execute()).map((c) => ({
      name: c.name,
      type: c.type,
      role: c.role,
      org: c.org,
      serial: c.serial,
      fingerprint: c.fingerprint,
      notAfter: iso(c.not_after)!,
      issuedAt: iso(c.issued_at)!,
      approvedBy: c.approved_by,
      revoked: c.revoked_at !== null,
      revokedAt: iso(c.revoked_at),
      // Read from the certificate itself (clients and admins name no hosts: not parsed).
      hosts: c.type === 'server' || c.type === 'relay' ? hostsOfCertificate(new X509Certificate(c.pem)) : [],
    }));
  }

  /** Revoke the valid certificates with these names or serials, and every renewal of them. */
  async revoke(
    sel: { names: string[]; serials: string[]; reason?: string },
    actor: AuditActor,
    guard?: OrgGuard,
  ) {
    const { names, serials } = sel;
    const reason = sel.reason ?? 'unspecified';
    const now = this.c.now().getTime();
    const db = this.c.store.db;
    const rows = await db
      .selectFrom('certificates')
      .select(['serial', 'name', 'org'])
      .where('revoked_at', 'is', null)
      .where((eb) =>
        eb.or([
          ...(names.length ? [eb('name', 'in', names)] : []),
          ...(serials.length
            ? [
                eb(
                  'serial',
                  'in',
                  serials.map((s) => s.toLowerCase().replaceAll(':', '')),
                ),
              ]
            : []),
        ]),
      )
      .execute();
    if (rows.length === 0) throw new PollenError('NOT_ENROLLED', 'No valid certificate matches');
    // A revoked certificate takes its renewals with it: they carry the same, now untrusted, identity.
    for (let frontier = rows.map((r) => r.serial); frontier.length > 0; ) {
      const next = await db
        .selectFrom('certificates')
        .select(['serial', 'name', 'org'])
        .where('renewed_from', 'in', frontier)
        .where('revoked_at', 'is', null)
        .execute();
      const fresh = next.filter((n) => !rows.some((r) => r.serial === n.serial));
      rows.push(...fresh);
      frontier = fresh.map((n) => n.serial);
    }
    for (const r of rows) guard?.(r.org ?? undefined);
    await this.c.batcher.run(async (tx) => {
      await tx
        .updateTable('certificates')
        .set({ revoked_at: now, revoke_reason: `${reason} (by ${actorLabel(actor)})` })
        .where(
          'serial',
          'in',
          rows.map((r) => r.serial),
        )
        .execute();
      for (const r of rows)
        await this.c.audit.append(
          tx,
          change(actor, 'certificate.revoked', r.name, new Date(now), {
            serial: r.serial,
            reason,
            ...(r.org !== null && { org: r.org }),
          }),
        );
    });
    this.crlCache = undefined;
    return { revoked: rows.map(({ serial, name }) => ({ serial, name })) };
  }

  async isRevoked(serial: string): Promise<boolean> {
    const row = await this.c.store.db
      .selectFrom('certificates')
      .select('revoked_at')
      .where('serial', '=', serial.toLowerCase())
      .executeTakeFirst();
    return row?.revoked_at != null;
  }

  /**
   * The CRLs (one per intermediate still in the chain: pki/crl.ts createCrls), re-signed when
   * something was revoked or after CRL_CACHE_MS.
   */
  async crl(): Promise<string> {
    const now = this.c.now().getTime();
    if (this.crlCache && this.crlCache.until > now) return this.crlCache.pem;
    const revoked = await this.c.store.db
      .selectFrom('certificates')
      .select(['serial', 'revoked_at'])
      .where('revoked_at', 'is not', null)
      .where('not_after', '>', now)
      .execute();
    const pem = await createCrls(
      [this.c.ca.issuer, ...this.c.ca.retiredIssuers],
      revoked.map((r) => ({ serial: r.serial, revokedAt: new Date(r.revoked_at!) })),
      new Date(now),
      DAY,
    );
    this.crlCache = { pem, until: now + CRL_CACHE_MS };
    return pem;
  }
}
