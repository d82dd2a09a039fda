import { readIssued } from '../../pki/site.js';
import { requireCaPath } from '../command.js';
import type { Output } from '../output.js';

export interface CertListOptions {
  ca?: string;
}

/** `pollen cert list`: the certificates `cert site` issued from a CA folder. */
export async function certList(o: CertListOptions, out: Output): Promise<void> {
  const issued = readIssued(requireCaPath(o.ca));
  out.result({ issued }, (d) =>
    d.issued.length === 0
      ? ['This CA has issued no site certificates.']
      : d.issued.map(
          (r) =>
            `${r.serial}  ${r.type.padEnd(6)} ${r.name}  expires ${r.notAfter}${r.revokedAt ? `  REVOKED ${r.revokedAt}` : ''}`,
        ),
  );
}
