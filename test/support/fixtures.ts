// Fixtures shared by unit and CLI tests.
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { initCa, type LoadedCa, loadCa } from '../../src/pki/ca.js';

/** The seed's custom policy, verbatim. */
export const SEED_CUSTOM_POLICY = `metadata:
  project: "my-federation"
  description: "Production enrollment policy"
  version: "1.0"

token:
  validity: 7d
  max_uses: 1

site:
  name_pattern: "hospital-*"

user:
  allowed_roles:
    - lead
    - member
    - org_admin
  default_role: lead

approval:
  method: policy
  rules:
    - name: "internal-auto-approve"
      description: "Auto-approve from internal network"
      match:
        site_name_pattern: "hospital-*"
        source_ips:
          - "10.0.0.0/8"
          - "172.16.0.0/12"
      action: approve

    - name: "external-pending"
      description: "Require manual approval for external"
      match:
        site_name_pattern: "*"
      action: pending

notifications:
  enabled: true
  channels:
    email:
      enabled: true
`;

/**
 * `openssl req -x509`: a self-signed certificate for `subject` (valid `days`, with the
 * `-addext` extensions given) and its new P-256 key, written to `certFile` and `keyFile`.
 */
export function selfSigned(
  keyFile: string,
  certFile: string,
  subject: string,
  days: number,
  addext: string[] = [],
) {
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile];
  const extensions = addext.flatMap((e) => ['-addext', e]);
  execFileSync(
    'openssl',
    ['req', '-x509', ...key, '-out', certFile, '-days', String(days), '-subj', subject, ...extensions],
    { stdio: 'ignore' },
  );
}

/** A CA folder like `pollen cert init` makes: rootCA.pem, ca.json, token.key (0600). */
export function makeCaFolder(path: string, name = 'demo-project'): void {
  mkdirSync(path, { recursive: true });
  selfSigned(join(path, 'rootCA.key'), join(path, 'rootCA.pem'), `/CN=${name} root`, 30);
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
    type: 'pkcs8',
    format: 'pem',
  });
  writeFileSync(join(path, 'token.key'), key, { mode: 0o600 });
  writeFileSync(join(path, 'ca.json'), JSON.stringify({ version: 1, name }));
}

/** A project CA and another one (both P-256), made in `dir`/ca and `dir`/other with these names. */
export async function twoCas(
  dir: string,
  name: string,
  otherName: string,
): Promise<{ ca: LoadedCa; other: LoadedCa }> {
  await initCa({ name, dir: join(dir, 'ca'), keyType: 'ec-p256' });
  await initCa({ name: otherName, dir: join(dir, 'other'), keyType: 'ec-p256' });
  return { ca: await loadCa(join(dir, 'ca')), other: await loadCa(join(dir, 'other')) };
}
