import { loadCa } from '../../pki/ca.js';
import { writeLocalCrl } from '../../pki/site.js';
import { requireCaPath } from '../command.js';
import type { Output } from '../output.js';

export interface CertCrlOptions {
  ca?: string;
  /** The CRL's lifetime in days. */
  days: number;
}

/** `pollen cert crl`: a fresh CRL for a CA folder. */
export async function certCrl(o: CertCrlOptions, out: Output): Promise<void> {
  const ca = await loadCa(requireCaPath(o.ca));
  const path = await writeLocalCrl(ca, new Date(), o.days);
  out.result({ crl: path }, (d) => [`CRL written to ${d.crl}`]);
}
