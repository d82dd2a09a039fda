import { PollenError } from '../../errors.js';
import { bold, type Output } from '../output.js';
import { type ServiceOptions, withClient } from './admin-client.js';

export interface EnrollmentRevokeOptions extends ServiceOptions {
  /** Participant names: all their valid certificates. */
  names: string[];
  serial: string[];
  reason: string;
}

/** `pollen enrollment revoke`: revoke certificates by name or serial (they go on the CRL). */
export async function enrollmentRevoke(f: EnrollmentRevokeOptions, out: Output): Promise<void> {
  if (f.names.length === 0 && f.serial.length === 0)
    throw new PollenError('USAGE', 'Say what to revoke: names or --serial HEX');
  const revoked = await withClient(f, (c) =>
    c.revoke({
      names: f.names.length ? f.names : undefined,
      serials: f.serial.length ? f.serial : undefined,
      reason: f.reason,
    }),
  );
  out.result({ revoked }, (d) => d.revoked.map((r) => `${bold('revoked')} ${r.name} serial ${r.serial}`));
}
