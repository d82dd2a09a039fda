/** The Certificate Service's admin API, as every `pollen enrollment` command reaches it. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Table from 'cli-table3';
import { CertServiceClient } from '../../enrollment/cert-service-client.js';
import { PollenError } from '../../errors.js';
import { type AdminCredentialFlags, adminCredential } from '../cert-service-credential.js';

/** Where the service is and how to trust and use it (flags or their variables). */
export interface ServiceOptions extends AdminCredentialFlags {
  certService?: string;
  caCert?: string;
  /** A CA folder whose rootCA.pem to trust (when --ca-cert is not given). */
  ca?: string;
}

/** A client for the admin API; the root to trust from --ca-cert or the CA folder. */
async function adminClient(f: ServiceOptions): Promise<CertServiceClient> {
  const url = f.certService;
  if (!url)
    throw new PollenError('USAGE', 'The Certificate Service URL is required', {
      hint: 'Pass --cert-service https://HOST:8443 or set POLLEN_CERT_SERVICE_URL.',
    });
  const credential = await adminCredential(f);
  const caPath = f.caCert ?? (f.ca ? join(f.ca, 'rootCA.pem') : undefined);
  let caCert: string | undefined;
  if (caPath) {
    try {
      caCert = readFileSync(caPath, 'utf8');
    } catch {
      throw new PollenError('FILE_NOT_FOUND', `Cannot read the root CA to trust: ${caPath}`, {
        hint: 'Give the project rootCA.pem with --ca-cert FILE (or POLLEN_CA_CERT).',
      });
    }
  }
  return new CertServiceClient({ url, apiKey: credential, caCert });
}

/** Open an admin client for `fn`, and close it when `fn` is done. */
export async function withClient<T>(f: ServiceOptions, fn: (c: CertServiceClient) => Promise<T>): Promise<T> {
  const client = await adminClient(f);
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

export function table(head: string[], rows: (string | null)[][]): string {
  const t = new Table({ head, style: { head: [], border: [] } });
  for (const r of rows) t.push(r.map((c) => c ?? ''));
  return t.toString();
}
