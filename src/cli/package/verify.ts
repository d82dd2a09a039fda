import { existsSync, realpathSync } from 'node:fs';
import { resolve, sep } from 'node:path';
import { type KitVerification, kitVerificationError, verifyKit } from '../../enrollment/kit-manifest.js';
import type { Output } from '../output.js';
import { tokenArgument } from './token-arg.js';

export interface PackageVerifyOptions {
  kitDir: string;
  rootFingerprint?: string;
  token?: string;
  allowUnsigned?: boolean;
  requirePin?: boolean;
}

/** Is `value` the path of a file inside the kit folder (then it came with the kit)? */
function fileInside(value: string, dir: string): boolean {
  const v = value.trim();
  if (!existsSync(v) || !existsSync(dir)) return false;
  const file = realpathSync(resolve(v));
  const kit = realpathSync(resolve(dir));
  return file.startsWith(`${kit}${sep}`);
}

function unpinnedWarning(v: KitVerification): string {
  if (v.signature !== 'valid')
    return 'no independent pin: the kit is unsigned, so nothing ties its files to the project root CA';
  const weak = [...new Set(v.pins.filter((p) => !p.independent).map((p) => p.source))];
  return `no independent pin: pass --root-fingerprint from the project admin (or --require-pin to refuse such kits)${
    weak.length > 0
      ? `; ${weak.join(' and ')} came with the kit and cannot vouch for it: a replaced kit brings its own`
      : ''
  }`;
}

function problemLines(v: KitVerification): string[] {
  return [
    ...v.errors.map((e) => `error: ${e}`),
    ...v.pins
      .filter((p) => p.matches === false)
      .map((p) => `root mismatch: ${p.source} pins ${p.fingerprint}, kit root is ${v.rootCaFingerprint}`),
    ...v.changed.map((c) => `changed: ${c.path} (${c.reasons.join('; ')})`),
    ...v.missing.map((m) => `missing: ${m}`),
    ...v.unexpected.map((u) => `unexpected: ${u}`),
  ];
}

/** `pollen package verify`: check a kit's signature, signer chain, root pin and every file. */
export async function packageVerify(o: PackageVerifyOptions, out: Output): Promise<void> {
  const dir = o.kitDir;
  let token: string | undefined;
  if (o.token !== undefined) {
    // The kit's own token file, passed by path, came with the kit: it stays a weak pin.
    if (fileInside(o.token, dir))
      out.warn(`--token ${o.token.trim()} is inside the kit: it is not an independent pin`);
    else token = tokenArgument(o.token);
  }
  const v = verifyKit(dir, {
    ...(o.rootFingerprint !== undefined && { rootFingerprint: o.rootFingerprint }),
    ...(token !== undefined && { token }),
  });
  const err = kitVerificationError(v, {
    allowUnsigned: Boolean(o.allowUnsigned),
    requirePin: Boolean(o.requirePin),
  });
  if (err) {
    if (!out.json) for (const line of problemLines(v)) out.progress(line);
    throw err;
  }
  if (!v.pinned) out.warn(unpinnedWarning(v));
  const { ok: intact, ...report } = v;
  out.result({ ...report, intact }, (r) => [
    `Kit ${r.dir} (${r.type} "${r.name}") is intact: ${r.files} files checked`,
    r.signature === 'valid'
      ? `  signed by ${r.signer?.subject} (${r.signer?.fingerprint})`
      : '  unsigned (accepted with --allow-unsigned)',
    ...(r.rootCaFingerprint ? [`  root CA ${r.rootCaFingerprint}`] : []),
    ...r.pins.map(
      (p) =>
        `  pin from ${p.source}${p.independent ? '' : ' (inside the kit, not independent)'}: ${p.fingerprint} ${p.matches ? 'matches' : 'not checked (no root)'}`,
    ),
    r.pinned
      ? '  pinned: the root CA matches a pin you gave'
      : '  NOT pinned: nothing independent of the kit vouches for its root CA',
  ]);
}
