import { PollenError } from '../../errors.js';
import { loadCa } from '../../pki/ca.js';
import { revokeLocal } from '../../pki/site.js';
import { requireCaPath } from '../command.js';
import { bold, type Output } from '../output.js';

export interface CertRevokeOptions {
  /** Participant names: every unrevoked certificate of each. */
  names: string[];
  ca?: string;
  serial: string[];
  reason: 'unspecified' | 'keyCompromise' | 'superseded' | 'cessationOfOperation';
}

/** `pollen cert revoke`: revoke hand-issued certificates and write the CA folder's CRL. */
export async function certRevoke(o: CertRevokeOptions, out: Output): Promise<void> {
  if (o.names.length === 0 && o.serial.length === 0)
    throw new PollenError('USAGE', 'Say what to revoke: names or --serial HEX');
  const ca = await loadCa(requireCaPath(o.ca));
  const r = await revokeLocal(ca, { names: o.names, serials: o.serial, reason: o.reason });
  out.result({ revoked: r.revoked.map((x) => ({ name: x.name, serial: x.serial })), crl: r.crlPath }, (d) => [
    ...d.revoked.map((x) => `${bold('revoked')} ${x.name} serial ${x.serial}`),
    `CRL written to ${d.crl}`,
  ]);
}
