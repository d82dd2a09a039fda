import { X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { PollenError } from '../../errors.js';
import { certificateFingerprint, sameFingerprint } from '../../pki/fingerprint.js';
import { isCertServiceIdentity } from '../../pki/names.js';
import { chainsToRoot, parseCertificates } from '../../pki/verify.js';
import { presentedChain } from '../../transport/presented-chain.js';
import { type CertServiceHttp, notCertServiceError } from '../cert-service-http.js';
import type { Ctx } from './context.js';

// The root CA is pinned from the token's fingerprint BEFORE anything is sent: the first
// connection trusts nothing and only reads the root (from the presented chain or GET /v1/ca);
// every request after that trusts that root alone and requires the service identity.

/** A client of the Certificate Service that trusts the pinned root alone. */
export interface Session {
  http: CertServiceHttp;
  root: X509Certificate;
}

/** The certificates the server presents, read over a connection that trusts nothing. */
function servedChain(ctx: Ctx, base: URL): Promise<X509Certificate[]> {
  const host = base.hostname.replace(/^\[|\]$/g, '');
  return presentedChain(host, Number(base.port || 443), { timeoutMs: ctx.timeoutMs, alpn: 'http/1.1' }).catch(
    (e) => {
      throw ctx.error(e, base.origin);
    },
  );
}

const caResponse = z.object({
  root: z.string(),
  intermediate: z.string().optional(),
  chain: z.string().optional(),
});

/** The root (and more certificates) the service publishes at GET /v1/ca, read trusting nothing. */
async function servedRoot(
  ctx: Ctx,
  url: string,
): Promise<{ root: X509Certificate; more: X509Certificate[] }> {
  const open = ctx.http(url, { nothing: true });
  let json: unknown;
  try {
    json = (await open.request('GET', 'v1/ca')).json;
  } finally {
    await open.close();
  }
  const parsed = caResponse.safeParse(json);
  if (!parsed.success)
    throw new PollenError(
      'UNEXPECTED_ANSWER',
      `${open.origin} did not answer GET /v1/ca like a Pollen Certificate Service`,
    );
  let root: X509Certificate;
  try {
    root = new X509Certificate(parsed.data.root);
  } catch {
    throw new PollenError(
      'UNEXPECTED_ANSWER',
      `${open.origin} answered GET /v1/ca with an unreadable root certificate`,
    );
  }
  return {
    root,
    more: parseCertificates(`${parsed.data.intermediate ?? ''}\n${parsed.data.chain ?? ''}`),
  };
}

/**
 * Find the project root at the service and check it against the pin, sending nothing but a TLS
 * handshake and (if the server does not present its root) `GET /v1/ca`. Returns a session that
 * trusts that root alone and requires the Certificate Service identity on every connection.
 */
export async function pinnedSession(ctx: Ctx, url: string, pin: string): Promise<Session> {
  const base = new URL(`${url}/`);
  const presented = await servedChain(ctx, base);
  let root = presented.find((c) => sameFingerprint(certificateFingerprint(c), pin));
  let candidates = presented;
  let source: 'tls-chain' | 'ca-endpoint' = 'tls-chain';
  if (!root) {
    source = 'ca-endpoint';
    const served = await servedRoot(ctx, url);
    const fp = certificateFingerprint(served.root);
    if (!sameFingerprint(fp, pin))
      throw new PollenError(
        'CA_FINGERPRINT_MISMATCH',
        `The Certificate Service at ${base.origin} uses root CA ${fp}, but the token pins ${pin}; nothing was sent`,
        { data: { expected: pin, actual: fp } },
      );
    root = served.root;
    candidates = [...served.more, ...presented];
  }
  const pinned = root;
  // The root alone does not make the Certificate Service: any participant's server certificate
  // chains to it too. Refuse before the token leaves (the client checks every later connection).
  const leaf = presented[0];
  if (!leaf || !isCertServiceIdentity(leaf.subjectAltName))
    throw notCertServiceError(base.origin, undefined, '; nothing was sent');
  const intermediates = candidates.filter(
    (c) => c.ca && c.fingerprint256 !== pinned.fingerprint256 && chainsToRoot(c, [], pinned, ctx.now()).ok,
  );
  ctx.emit({
    kind: 'pinned',
    message: `the Certificate Service at ${base.origin} uses the pinned root CA ${certificateFingerprint(pinned)}`,
    fingerprint: certificateFingerprint(pinned),
    source,
  });
  const project = [pinned.toString(), ...intermediates.map((c) => c.toString())];
  return { root: pinned, http: ctx.http(url, { project, label: 'the pinned root CA' }) };
}
