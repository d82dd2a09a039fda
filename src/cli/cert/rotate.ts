import { parseDuration } from '../../enrollment/policy-match.js';
import { rotateTokenKey } from '../../enrollment/token-rotate.js';
import { requireCaPath } from '../command.js';
import { bold, type Output } from '../output.js';

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
