/**
 * A SuperLink over TLS with a new project CA for tests (no test-framework imports, so a script
 * outside vitest can use it too).
 */
import { join } from 'node:path';
import { initCa, type LoadedCa, loadCa } from '../../src/pki/ca.js';
import { createSiteCertificate } from '../../src/pki/site.js';
import { type SuperLink, type SuperLinkOptions, startSuperLink } from '../../src/superlink/superlink.js';
import { loadTlsMaterial } from '../../src/transport/tls.js';

/**
 * A new project CA `project` in `dir` and a SuperLink of it over TLS on 127.0.0.1 (its state in
 * `dir/superlink`): the CA, the root certificate and the SuperLink. With `caDir`, the SuperLink's
 * certificate comes from that CA instead (e.g. a Certificate Service's).
 */
export async function tlsSuperLink(
  dir: string,
  project: string,
  o: Omit<SuperLinkOptions, 'fleet' | 'control' | 'serverAppIo' | 'stateDir' | 'tls' | 'nodeAuth'>,
  caDir?: string,
): Promise<{ ca: LoadedCa; root: string; superlink: SuperLink }> {
  if (!caDir) await initCa({ name: project, dir: join(dir, 'ca'), keyType: 'ec-p256' });
  const ca = await loadCa(caDir ?? join(dir, 'ca'));
  const server = await createSiteCertificate(ca, {
    name: 'superlink',
    type: 'server',
    outDir: join(dir, 'superlink-tls'),
    validityDays: 1,
    hosts: ['127.0.0.1'],
  });
  const tls = loadTlsMaterial({ cert: server.certPath, key: server.keyPath, ca: server.rootPath });
  const local = { host: '127.0.0.1', port: 0 };
  const superlink = await startSuperLink({
    stateDir: join(dir, 'superlink'),
    tls,
    nodeAuth: false,
    ...o,
    fleet: local,
    control: local,
    serverAppIo: local,
  });
  return { ca, root: tls.ca, superlink };
}
