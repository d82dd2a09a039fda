import { PollenError } from '../../errors.js';
import { crlOfIssuer, readCrlsOfKnownIssuers, serialKey } from '../../pki/crl.js';
import type { x509 } from '../../pki/keys.js';
import type { LoadedKit } from '../kit.js';
import { type Existing, pem } from './certificate.js';
import { type Ctx, rel } from './context.js';

/** How long `pollen start` waits for the CRL before it starts without it. */
const CRL_TIMEOUT_MS = 10_000;

export function revokedHint(kit: LoadedKit): string {
  return `Ask the project admin for a new token, move ${rel(kit, kit.paths.cert)} and ${rel(kit, kit.paths.key)} away, and run pollen start with the new token.`;
}

/**
 * `GET /v1/crl` over the pinned, identity-checked connection: the lists of the intermediates our
 * chain knows, each checked to carry its signature (readCrlsOfKnownIssuers says why others go).
 */
async function fetchCrl(
  ctx: Ctx,
  current: Extract<Existing, { ok: true }>,
  url: string,
): Promise<x509.X509Crl[]> {
  const http = ctx.http(url, { project: [pem(current.root), ...current.pool.map(pem)] });
  let text: string;
  try {
    text = (
      await http.text('GET', 'v1/crl', {
        accept: 'application/x-pem-file',
        timeoutMs: Math.min(ctx.timeoutMs, CRL_TIMEOUT_MS),
      })
    ).text;
  } finally {
    await http.close();
  }
  return readCrlsOfKnownIssuers(
    text,
    [...current.pool, current.root],
    "The Certificate Service's GET /v1/crl answer",
  );
}

/**
 * Fail with CERT_REVOKED when the Certificate Service's CRL lists our certificate. A service that
 * cannot be reached, or a CRL that cannot be read or is not signed by our chain, gives a
 * `revocation-unchecked` event instead, so sites start while the service is down.
 */
export async function checkRevocation(
  ctx: Ctx,
  current: Extract<Existing, { ok: true }>,
  url: string,
): Promise<void> {
  const { kit } = ctx;
  const name = rel(kit, kit.paths.cert);
  let crls: x509.X509Crl[];
  try {
    crls = await fetchCrl(ctx, current, url);
  } catch (e) {
    if (ctx.opts.signal?.aborted)
      throw new PollenError('CANCELLED', 'Enrollment was cancelled', { cause: e });
    const err = ctx.error(e, url);
    ctx.emit({
      kind: 'revocation-unchecked',
      message: `could not check ${name} against the revocation list (${err.code}): ${err.message}; starting anyway`,
      error: err,
    });
    return;
  }
  // The list of the intermediate that issued our certificate: no other speaks of it.
  const own = crlOfIssuer(crls, current.leaf);
  if (!own) {
    const error = new PollenError(
      'CERT_INVALID',
      "The Certificate Service's revocation list has no list of the intermediate that issued this site's certificate",
      {
        hint: "Run `pollen doctor` on the Certificate Service's CA folder: it needs the key of every intermediate still in the chain to sign its list.",
      },
    );
    ctx.emit({
      kind: 'revocation-unchecked',
      message: `could not check ${name} against the revocation list (${error.code}): ${error.message}; starting anyway`,
      error,
    });
    return;
  }
  const serial = serialKey(current.info.serial);
  const entry = own.entries.find((e) => serialKey(e.serialNumber) === serial);
  if (entry)
    throw new PollenError(
      'CERT_REVOKED',
      `The certificate ${name} was revoked on ${entry.revocationDate.toISOString()}; ask the project admin for a new token`,
      { hint: revokedHint(kit), data: { serial, revokedAt: entry.revocationDate.toISOString() } },
    );
}
