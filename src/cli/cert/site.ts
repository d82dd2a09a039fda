import { PollenError } from '../../errors.js';
import { loadCa } from '../../pki/ca.js';
import type { KeyType } from '../../pki/keys.js';
import type { CertType } from '../../pki/profiles.js';
import { createSiteCertificate } from '../../pki/site.js';
import { requireCaPath } from '../command.js';
import { bold, dim, type Output } from '../output.js';

export interface CertSiteOptions {
  name: string;
  type: CertType;
  ca?: string;
  host: string[];
  org?: string;
  role?: string;
  output: string;
  validity: number;
  keyType: KeyType;
  force?: boolean;
}

const ADMIN_ROLES = ['lead', 'member', 'org_admin', 'project_admin'];

/** `pollen cert site`: a key and certificate for a participant, signed by the CA folder. */
export async function certSite(o: CertSiteOptions, out: Output): Promise<void> {
  if (o.type === 'admin' && o.role && !ADMIN_ROLES.includes(o.role))
    throw new PollenError('INVALID_ARGUMENT', `--role must be one of ${ADMIN_ROLES.join(', ')}`);
  const ca = await loadCa(requireCaPath(o.ca));
  const r = await createSiteCertificate(ca, {
    name: o.name,
    type: o.type,
    hosts: o.host,
    org: o.org,
    role: o.role ?? (o.type === 'admin' ? 'lead' : undefined),
    outDir: o.output,
    validityDays: o.validity,
    keyType: o.keyType,
    force: o.force,
  });
  out.result(
    {
      name: r.name,
      type: r.type,
      serial: r.serial,
      fingerprint: r.fingerprint,
      notAfter: r.notAfter.toISOString(),
      certificate: r.certPath,
      key: r.keyPath,
      rootCA: r.rootPath,
    },
    (d) => [
      `${bold('Issued')} ${d.type} certificate for ${d.name}`,
      `  certificate  ${d.certificate}`,
      `  key          ${d.key} (0600)`,
      `  root CA      ${d.rootCA}`,
      `  serial       ${d.serial}`,
      `  expires      ${d.notAfter}`,
      '',
      dim('Send these three files to the site over a secure channel.'),
    ],
  );
}
