/** A bench's PKI: a new folder holding a CA (`ca/`) and the SuperLink's server certificate. */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initCa, loadCa } from '../../src/pki/ca.js';
import { createSiteCertificate } from '../../src/pki/site.js';

export async function benchPki(
  prefix: string,
  o: { name: string; hosts: string[] },
): Promise<{ dir: string; ca: Awaited<ReturnType<typeof loadCa>> }> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  await initCa({ name: o.name, dir: join(dir, 'ca') });
  const ca = await loadCa(join(dir, 'ca'));
  await createSiteCertificate(ca, {
    name: 'superlink',
    type: 'server',
    outDir: dir,
    validityDays: 1,
    hosts: o.hosts,
  });
  return { dir, ca };
}
