import { parseDuration } from '../../enrollment/policy-match.js';
import { rotateTokenKey } from '../../enrollment/token-rotate.js';
import { PollenError } from '../../errors.js';
import { requireCaPath } from '../command.js';
import { bold, type Output } from '../output.js';
import { readPassphrase } from './init.js';
import { certRenew } from './renew.js';

export interface CertRotateTokenKeyOptions {
  ca?: string;
  /** How long the old key still verifies (a duration: 30d, 12h); default the longest token validity. */
  overlap?: string;
}

/** `pollen cert rotate token-key`: new tokens get a new key; outstanding ones keep verifying. */
export async function certRotateTokenKey(o: CertRotateTokenKeyOptions, out: Output): Promise<void> {
  const r = rotateTokenKey(requireCaPath(o.ca), {
    ...(o.overlap !== undefined && { overlapMs: parseDuration(o.overlap) }),
  });
  out.result(r, (d) => [
    `${bold('Rotated the token key')} in ${d.caDir}: new tokens are signed with kid ${d.kid}`,
    `  kid ${d.previousKid} still verifies until ${d.dropAfter}`,
    ...d.dropped.map((k) => `  dropped kid ${k} (its overlap had ended)`),
    'A running Certificate Service takes the new key up within seconds; nothing restarts.',
  ]);
}

export interface CertRotateCertServiceOptions {
  ca?: string;
  workspace: string;
}

/** `pollen cert rotate cert-service`: the service's own certificate, re-issued now. */
export async function certRotateCertService(o: CertRotateCertServiceOptions, out: Output): Promise<void> {
  const { rotateServiceCertificate } = await import('../../enrollment/service/server.js');
  const r = await rotateServiceCertificate(requireCaPath(o.ca), o.workspace);
  out.result(r, (d) => [
    `${bold('Re-issued the Certificate Service certificate')} ${d.certificate}: serial ${d.serial}, valid until ${d.notAfter}`,
    'The running service presents it to new connections within seconds; sites trust the CA, not the certificate.',
  ]);
}

export interface CertRotateSuperLinkOptions {
  kitDir: string;
  certService?: string;
}

/**
 * `pollen cert rotate superlink KIT_DIR`: the SuperLink's certificate renewed now through the
 * Certificate Service; the running SuperLink presents it within seconds.
 */
export async function certRotateSuperLink(o: CertRotateSuperLinkOptions, out: Output): Promise<void> {
  const { loadKit } = await import('../../enrollment/kit.js');
  const kit = loadKit(o.kitDir);
  if (kit.config.type !== 'server')
    throw new PollenError(
      'USAGE',
      `${o.kitDir} is a ${kit.config.type} kit; the SuperLink runs from a server kit`,
      {
        hint: 'Sites renew by themselves; `pollen cert renew KIT_DIR` renews one now.',
      },
    );
  await certRenew({ kitDir: o.kitDir, certService: o.certService }, out);
}

export interface CertRotateIntermediateOptions {
  ca?: string;
  rootKey?: string;
  passphraseFile?: string;
  caPassphrase?: string;
}

/** `pollen cert rotate intermediate`: a new intermediate from the offline root; the old one overlaps. */
export async function certRotateIntermediate(o: CertRotateIntermediateOptions, out: Output): Promise<void> {
  const { rotateIntermediate } = await import('../../pki/ca-rotate.js');
  const r = await rotateIntermediate(requireCaPath(o.ca), {
    ...(o.rootKey !== undefined && { rootKeyPath: o.rootKey }),
    passphrase: readPassphrase(o),
  });
  out.result(r, (d) => [
    `${bold('Rotated the intermediate CA')} in ${d.caDir}: new certificates are signed by ${d.fingerprint} (until ${d.notAfter})`,
    `  ${d.previousFingerprint} stays in the chain until ${d.previousNotAfter}: what it signed stays valid`,
    'A running Certificate Service takes it up within seconds; sites trust the root and need nothing.',
  ]);
}
