import { readFileSync } from 'node:fs';
import { PollenError } from '../../errors.js';
import { initCa } from '../../pki/ca.js';
import type { KeyType } from '../../pki/keys.js';
import { bold, dim, type Output } from '../output.js';

export interface CertInitOptions {
  name: string;
  output: string;
  keyType: KeyType;
  validity: number;
  passphraseFile?: string;
  caPassphrase?: string;
}

/** The root key passphrase: from --passphrase-file, else POLLEN_CA_PASSPHRASE (`--ca-passphrase`). */
export function readPassphrase(o: { passphraseFile?: string; caPassphrase?: string }): string | undefined {
  if (o.passphraseFile) {
    const p = readFileSync(o.passphraseFile, 'utf8').replace(/\r?\n$/, '');
    if (!p) throw new PollenError('INVALID_ARGUMENT', `The passphrase file ${o.passphraseFile} is empty`);
    return p;
  }
  return o.caPassphrase || undefined;
}

/** `pollen cert init`: the project root CA, its online intermediate and the token key. */
export async function certInit(o: CertInitOptions, out: Output): Promise<void> {
  out.progress(`creating the CA for ${o.name} in ${o.output}`);
  const meta = await initCa({
    name: o.name,
    dir: o.output,
    keyType: o.keyType,
    validityDays: o.validity,
    passphrase: readPassphrase(o),
  });
  out.result(meta, (m) => [
    `${bold('Created the project CA')} ${m.name} in ${m.dir}`,
    `  root fingerprint   ${m.rootFingerprint}`,
    `  root key           ${m.rootEncrypted ? 'encrypted with your passphrase' : dim('not encrypted (use --passphrase-file)')}`,
    `  key type           ${m.keyType} (intermediate signs with ${m.keyType === 'rsa-3072' ? 'rsa-3072' : 'ec-p256'})`,
    '',
    'Next: pollen cert site -n server1 -t server -c ' + m.dir + ' --host server.example.com',
  ]);
}
