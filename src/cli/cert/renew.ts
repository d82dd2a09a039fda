import { PollenError } from '../../errors.js';
import { bold, type Output } from '../output.js';

export interface CertRenewOptions {
  /** The startup kit whose certificate to renew. */
  kitDir: string;
  /** The Certificate Service (default: the kit's enrollment.json). */
  certService?: string;
}

/** `pollen cert renew`: renew a kit's certificate now, over mutual TLS with the current one. */
export async function certRenew(o: CertRenewOptions, out: Output): Promise<void> {
  const { enrollKit } = await import('../../enrollment/enroll-client.js');
  const r = await enrollKit(o.kitDir, {
    renew: 'now',
    certServiceUrl: o.certService,
    onProgress: (e) => out.progress(e.message),
  });
  if (r.action !== 'renewed')
    throw new PollenError(
      (r.renewalError?.code as 'UNAVAILABLE' | undefined) ?? 'NOT_ENROLLED',
      r.renewalError?.message ?? 'The kit has no certificate to renew; start it to enroll first',
    );
  out.result(
    {
      name: r.kit.config.name,
      serial: r.certificate.serial,
      notAfter: r.certificate.notAfter.toISOString(),
      renewAt: r.certificate.renewAt.toISOString(),
    },
    (d) => [
      `${bold('Renewed')} ${d.name}: serial ${d.serial}, valid until ${d.notAfter} (next renewal from ${d.renewAt})`,
    ],
  );
}
