import type { Output } from '../output.js';
import { type ServiceOptions, table, withClient } from './admin-client.js';

export interface EnrollmentEnrolledOptions extends ServiceOptions {
  type?: string;
  /** Include revoked and expired certificates. */
  all?: boolean;
}

/** `pollen enrollment enrolled`: enrolled participants and their certificates. */
export async function enrollmentEnrolled(f: EnrollmentEnrolledOptions, out: Output): Promise<void> {
  let enrolled = await withClient(f, (c) => c.enrolled(f.type as never));
  const now = Date.now();
  if (!f.all) enrolled = enrolled.filter((e) => !e.revoked && Date.parse(e.notAfter) > now);
  // An organisation column only when a certificate names one; hosts only when a server or relay
  // certificate names some.
  const orgs = enrolled.some((e) => e.org !== null);
  const hosts = enrolled.some((e) => e.hosts.length > 0);
  out.result({ enrolled }, (d) =>
    d.enrolled.length === 0
      ? ['Nobody is enrolled yet.']
      : [
          table(
            [
              'name',
              'type',
              'role',
              ...(orgs ? ['organisation'] : []),
              'serial',
              'expires',
              'approved by',
              'revoked',
              ...(hosts ? ['hosts'] : []),
            ],
            d.enrolled.map((e) => [
              e.name,
              e.type,
              e.role,
              ...(orgs ? [e.org ?? ''] : []),
              e.serial,
              e.notAfter,
              e.approvedBy,
              e.revoked ? 'yes' : '',
              ...(hosts ? [e.hosts.join(', ')] : []),
            ]),
          ),
        ],
  );
}
