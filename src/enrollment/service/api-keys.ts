import { createHash, timingSafeEqual } from 'node:crypto';
import { PollenError } from '../../errors.js';
import type { Database } from '../../store/database.js';
import type { EnrollmentSchema } from './schema.js';

/** The admin API keys, kept as SHA-256 hashes and compared in constant time. */
export class ApiKeys {
  private constructor(private readonly hashes: Buffer[]) {}

  /** The configured hashes (hex) and those recorded in the store (`pollen cert api-key`). */
  static async load(store: Database<EnrollmentSchema>, configured: string[]): Promise<ApiKeys> {
    const hashes = configured.map((h) => Buffer.from(h, 'hex'));
    for (const row of await store.db.selectFrom('api_keys').select('sha256').execute())
      hashes.push(Buffer.from(row.sha256, 'hex'));
    return new ApiKeys(hashes);
  }

  get count(): number {
    return this.hashes.length;
  }

  /** Check a Bearer API key; returns the actor name recorded on changes. */
  authenticate(header: string | undefined): string {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
    if (!m) throw new PollenError('API_KEY_REQUIRED', 'This call needs an admin API key');
    const digest = createHash('sha256').update(m[1]!).digest();
    let found: Buffer | undefined;
    for (const h of this.hashes) if (h.length === digest.length && timingSafeEqual(h, digest)) found = h;
    if (!found) throw new PollenError('API_KEY_INVALID', 'The API key is not valid');
    return `api-key:${found.toString('hex').slice(0, 12)}`;
  }
}
