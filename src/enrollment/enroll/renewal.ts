import { createPrivateKey } from 'node:crypto';
import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { createCsr } from '../../pki/csr.js';
import { generateKeyPair, keyTypeInfo, privateKeyToPem } from '../../pki/keys.js';
import { parseCertificates } from '../../pki/verify.js';
import { writeFileAtomic, writeSecretFile } from '../../util/files.js';
import type { CertificateInfo } from '../enroll-client.js';
import type { LoadedKit } from '../kit.js';
import { certificateInfo, type Existing, pem, sameKey, verifyIssued } from './certificate.js';
import { type Ctx, rel } from './context.js';

// Renewal over mutual TLS with a new key: NAME.key.next and NAME.crt.next are written first and
// renamed into place, so an interrupted renewal is completed (or undone) at the next start.

const nextPath = (p: string) => `${p}.next`;

/** A renewal interrupted between its two renames is completed; other leftovers are removed. */
export function finishInterruptedRenewal(kit: LoadedKit): void {
  const keyNext = nextPath(kit.paths.key);
  const certNext = nextPath(kit.paths.cert);
  const hasKey = existsSync(keyNext);
  const hasCert = existsSync(certNext);
  if (!hasKey && !hasCert) return;
  try {
    const cert = hasCert ? parseCertificates(readFileSync(certNext, 'utf8'))[0] : undefined;
    const key = createPrivateKey(readFileSync(hasKey ? keyNext : kit.paths.key));
    if (cert && sameKey(key, cert.publicKey)) {
      if (hasKey) renameSync(keyNext, kit.paths.key);
      renameSync(certNext, kit.paths.cert);
      return;
    }
  } catch {
    // fall through: remove what cannot be completed
  }
  rmSync(keyNext, { force: true });
  rmSync(certNext, { force: true });
}

export async function renewCertificate(
  ctx: Ctx,
  current: Extract<Existing, { ok: true }>,
  url: string,
): Promise<CertificateInfo> {
  const { kit } = ctx;
  ctx.emit({
    kind: 'renewing',
    message: `renewing ${rel(kit, kit.paths.cert)} over mutual TLS at ${new URL(url).origin}`,
  });
  const clientCertificate = {
    cert: [current.leaf, ...current.pool].map(pem).join(''),
    key: current.key.export({ type: 'pkcs8', format: 'pem' }) as string,
  };
  const keys = await generateKeyPair('ec-p256');
  const keyPem = await privateKeyToPem(keys.privateKey);
  const keyNext = nextPath(kit.paths.key);
  const certNext = nextPath(kit.paths.cert);
  writeSecretFile(keyNext, keyPem);
  try {
    const csr = await createCsr(keys, keyTypeInfo('ec-p256'), kit.config.name);
    const http = ctx.http(url, { project: [pem(current.root), ...current.pool.map(pem)], clientCertificate });
    let answer: { status: number; json: unknown };
    try {
      answer = await http.request('POST', 'v1/renew', { body: { csr } });
    } finally {
      await http.close();
    }
    const verified = verifyIssued(kit, answer.json, createPrivateKey(keyPem), current.root, ctx.now());
    writeFileAtomic(kit.paths.chain, [...verified.intermediates, current.root].map(pem).join(''), 0o644);
    writeFileAtomic(certNext, pem(verified.leaf), 0o644);
    renameSync(keyNext, kit.paths.key);
    renameSync(certNext, kit.paths.cert);
    return certificateInfo(kit, verified.leaf);
  } catch (e) {
    rmSync(keyNext, { force: true });
    rmSync(certNext, { force: true });
    throw e;
  }
}
