import { X509Certificate } from 'node:crypto';
import { change } from '../../audit/entry.js';
import { PollenError } from '../../errors.js';
import { checkCsr } from '../../pki/csr.js';
import { type CertType, hostsOfCertificate } from '../../pki/profiles.js';
import { verifyChain } from '../../pki/verify.js';
import type { ServiceContext } from './context.js';
import type { CertificateIssuer, CertificateRow, IssuedResponse } from './issuer.js';

const superseded = () =>
  new PollenError('CERT_SUPERSEDED', 'The presented certificate was already renewed', {
    hint: 'Use the renewed certificate; a certificate renews only once.',
  });

/**
 * Renewal over mutual TLS: the presented certificate names the site, the CSR brings the new key.
 * Each certificate renews once: the renewal supersedes it in the same transaction. A retry with
 * the same new key gets the same answer.
 */
export class Renewal {
  constructor(
    private readonly c: ServiceContext,
    private readonly issuer: CertificateIssuer,
  ) {}

  /**
   * The current certificate of the caller. `peerChain` is what the client presented in the TLS
   * handshake (leaf first; the handshake proved it holds the leaf's key); it must chain to the
   * project root and be a current, unrevoked certificate issued by this service.
   */
  async authenticate(peerChain: string[]): Promise<CertificateRow> {
    const [leaf, ...rest] = peerChain;
    const now = this.c.now();
    if (!leaf)
      throw new PollenError('FORBIDDEN', 'Renewal needs the current certificate as a TLS client certificate');
    if (
      !verifyChain(leaf, `${rest.join('')}${this.c.ca.intermediatePems.join('\n')}\n`, this.c.ca.rootPem, now)
    )
      throw new PollenError(
        'FORBIDDEN',
        'The presented certificate is not a valid certificate of this project',
      );
    const current = await this.c.store.db
      .selectFrom('certificates')
      .selectAll()
      .where('serial', '=', new X509Certificate(leaf).serialNumber.toLowerCase())
      .executeTakeFirst();
    if (!current)
      throw new PollenError('NOT_ENROLLED', 'The presented certificate was not issued by this service');
    if (current.revoked_at !== null)
      throw new PollenError('CERT_REVOKED', 'The presented certificate is revoked');
    if (current.not_after <= now.getTime())
      throw new PollenError('CERT_EXPIRED', 'The presented certificate has expired');
    return current;
  }

  /** Renew `current` (from `authenticate`) with the key of `csrPem`. */
  async renew(current: CertificateRow, csrPem: string, address?: string): Promise<IssuedResponse> {
    const now = this.c.now();
    const csr = checkCsr(csrPem);
    if (csr.commonName !== current.name)
      throw new PollenError('CSR_SUBJECT_MISMATCH', `The CSR common name must be '${current.name}'`);
    if (current.superseded_by) {
      const next = await this.c.store.db
        .selectFrom('certificates')
        .selectAll()
        .where('serial', '=', current.superseded_by)
        .executeTakeFirst();
      const sameKey =
        next &&
        new X509Certificate(next.pem).publicKey.export({ type: 'spki', format: 'der' }).equals(csr.spki);
      if (next && sameKey && next.revoked_at === null) return this.issuer.stored(next);
      throw superseded();
    }
    const type = current.type as CertType;
    // The renewed certificate names the same hosts (subjectAltName DNS and IP entries).
    const hosts = hostsOfCertificate(new X509Certificate(current.pem));
    const issued = this.issuer.sign(
      csr,
      { name: current.name, type, role: current.role ?? undefined, org: current.org ?? undefined, hosts },
      now,
    );
    await this.c.batcher.run(async (tx) => {
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
          this.issuer.row(issued, current, `renewal:${current.serial}`, now, {
            jti: current.jti ?? undefined,
            renewedFrom: current.serial,
          }),
        )
        .execute();
      await this.c.audit.append(
        tx,
        change(
          {
            subject: current.name,
            name: `certificate:${current.serial}`,
            org: current.org,
            auth: 'certificate',
            address: address ?? null,
          },
          'certificate.renewed',
          current.name,
          now,
          {
            serial: issued.serial,
            from: current.serial,
            ...(current.org !== null && { org: current.org }),
          },
        ),
      );
    });
    return this.issuer.response(issued, current.name, type, current.role);
  }
}
