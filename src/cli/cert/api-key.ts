import { createHash, randomBytes } from 'node:crypto';
import { writeSecretFile } from '../../util/files.js';
import type { Output } from '../output.js';

export interface CertApiKeyOptions {
  /** Write the key to this file (0600) instead of printing it. */
  output?: string;
}

/** An API key: 256 random bits, printable; services keep only its SHA-256. */
function newApiKey(): { key: string; sha256: string } {
  const key = `pollen_${randomBytes(32).toString('base64url')}`;
  return { key, sha256: createHash('sha256').update(key).digest('hex') };
}

/** `pollen cert api-key`: a new admin API key for the Certificate Service. */
export async function certApiKey(o: CertApiKeyOptions, out: Output): Promise<void> {
  const { key, sha256 } = newApiKey();
  if (o.output) writeSecretFile(o.output, `${key}\n`);
  out.result(o.output ? { file: o.output, sha256 } : { apiKey: key, sha256 }, (d) =>
    o.output ? [`Wrote the API key to ${o.output} (0600)`, `  sha256 ${d.sha256}`] : [key],
  );
}
