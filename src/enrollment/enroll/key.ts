import { createPrivateKey, createPublicKey, type KeyObject, webcrypto } from 'node:crypto';
import { PollenError } from '../../errors.js';
import { createCsr } from '../../pki/csr.js';
import { describeKey, generateKeyPair, keyTypeInfo, privateKeyToPem } from '../../pki/keys.js';
import { writeSecretFile } from '../../util/files.js';
import { publicKeyId } from './certificate.js';
import { type Ctx, readIf, rel } from './context.js';
import { type EnrollmentState, writeState } from './state.js';

// The site's key is made here and never leaves: saved 0600 before the CSR is sent, and kept (with
// its CSR, in the enrollment state) while a request is pending.

async function loadOrCreateKey(ctx: Ctx, rotate: boolean): Promise<{ key: KeyObject; csr: string | null }> {
  const { kit } = ctx;
  const keyPem = readIf(kit.paths.key);
  if (keyPem !== null && !rotate) {
    let key: KeyObject;
    try {
      key = createPrivateKey(keyPem);
      describeKey(key);
    } catch (e) {
      throw new PollenError(
        'KEY_INVALID',
        `${rel(kit, kit.paths.key)} is not a usable unencrypted private key`,
        {
          cause: e,
          hint: `Move ${rel(kit, kit.paths.key)} away to let Pollen make a new key.`,
        },
      );
    }
    ctx.emit({
      kind: 'key-reused',
      message: `using the existing key ${rel(kit, kit.paths.key)}`,
      path: kit.paths.key,
    });
    return { key, csr: null };
  }
  const keys = await generateKeyPair('ec-p256');
  const pemText = await privateKeyToPem(keys.privateKey);
  // The key is on disk (0600) before any request that depends on it leaves this machine.
  writeSecretFile(kit.paths.key, pemText);
  const csr = await createCsr(keys, keyTypeInfo('ec-p256'), kit.config.name);
  ctx.emit({
    kind: 'key-created',
    message: `made a new P-256 key: ${rel(kit, kit.paths.key)} (mode 0600)`,
    path: kit.paths.key,
  });
  return { key: createPrivateKey(pemText), csr };
}

async function csrFor(key: KeyObject, name: string): Promise<string> {
  const info = describeKey(key);
  const pkcs8 = key.export({ type: 'pkcs8', format: 'der' });
  const pub = createPublicKey(key).export({ type: 'spki', format: 'der' });
  const alg =
    info.kind === 'ec'
      ? { name: 'ECDSA', namedCurve: info.curve ?? 'P-256' }
      : { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  const privateKey = await webcrypto.subtle.importKey('pkcs8', pkcs8, alg, false, ['sign']);
  const publicKey = await webcrypto.subtle.importKey('spki', pub, alg, true, ['verify']);
  return createCsr({ privateKey, publicKey } as CryptoKeyPair, info, name);
}

/**
 * The key and CSR of the request: the pending request's (resumed), else the kit's existing key,
 * else a new one (also when the old certificate expired: `rotate`). A new request is recorded in
 * the enrollment state before anything is sent.
 */
export async function requestKey(
  ctx: Ctx,
  state: EnrollmentState | null,
  o: { haveToken: boolean; url: string; pin: string; rotate: boolean },
): Promise<{ key: KeyObject; state: EnrollmentState }> {
  const { kit } = ctx;
  const keyPem = readIf(kit.paths.key);
  let stateKey: KeyObject | null = null;
  if (state && keyPem !== null)
    try {
      const k = createPrivateKey(keyPem);
      stateKey = publicKeyId(k) === state.keyId ? k : null;
    } catch {
      stateKey = null;
    }
  if (state && stateKey) {
    ctx.emit({
      kind: 'key-reused',
      message: `resuming with the key ${rel(kit, kit.paths.key)}`,
      path: kit.paths.key,
    });
    return { key: stateKey, state };
  }
  // The key of a pending request is gone: that request can never be collected.
  if (state?.requestId && !o.haveToken)
    throw new PollenError(
      'TOKEN_MISSING',
      'The key of the pending enrollment request is gone and there is no token to enroll again',
    );
  const made = await loadOrCreateKey(ctx, o.rotate);
  const csr = made.csr ?? (await csrFor(made.key, kit.config.name));
  const now = ctx.now().toISOString();
  const fresh: EnrollmentState = {
    version: 1,
    name: kit.config.name,
    type: kit.config.type,
    keyId: publicKeyId(made.key),
    csr,
    certServiceUrl: o.url,
    rootCaFingerprint: o.pin,
    requestId: null,
    pollUrl: null,
    createdAt: now,
    updatedAt: now,
  };
  writeState(kit, fresh);
  return { key: made.key, state: fresh };
}
