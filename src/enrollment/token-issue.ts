/**
 * Issuing enrollment tokens for a project admin, in either of two ways: locally, signed with a CA
 * folder's token key under a policy file, or remotely, by the Certificate Service (which applies
 * its own policy). Both give the same records.
 */
import { resolve } from 'node:path';
import { PollenError } from '../errors.js';
import { assertValidOrg } from '../pki/names.js';
import type { SubjectType } from './policy.js';
import { loadPolicy } from './policy-load.js';
import { checkSubjectSyntax, checkTokenHosts, issueTokens, loadTokenSigner } from './token.js';
import { isoSeconds } from './token-inspect.js';

/** Who signs: the CA folder's token key (local) or a Certificate Service (remote). */
export type TokenIssuer =
  | {
      kind: 'local';
      caDir: string;
      /** The policy YAML; the built-in policy when left out. */
      policyPath?: string;
      /** The root key passphrase, when the CA folder's keys are encrypted with it. */
      passphrase?: string;
    }
  | {
      kind: 'remote';
      url: string;
      apiKey: string;
      /** The root CA to trust for the service (PEM); the system roots when left out. */
      caCert?: string;
    };

export interface TokenRequest {
  subjects: readonly string[];
  type: SubjectType;
  /** User tokens only. */
  role?: string;
  /** Server and relay tokens: the DNS names and IP addresses of their certificate. */
  hosts?: readonly string[];
  /** The organisation the certificates will name (`O=`). */
  org?: string;
}

export interface TokenRecord {
  subject: string;
  tokenId: string;
  subjectType: SubjectType;
  expiresAt: string;
  token: string;
  /** Server and relay tokens: the hosts their certificate will name. */
  hosts?: string[];
}

export interface IssuedTokens {
  records: TokenRecord[];
  mode: TokenIssuer['kind'];
  /** Local mode: the policy the tokens were issued under. */
  policy?: { source: string; project: string; version: string; sha256: string };
  /** Local mode: the CA folder, absolute. */
  caDir?: string;
  /** Remote mode: the Certificate Service. */
  url?: string;
}

function checkedOrg(org: string): string {
  assertValidOrg(org);
  return org;
}

/** Each subject once, each well formed for its type (INVALID_ARGUMENT otherwise). */
export function checkSubjects(subjects: readonly string[], type: SubjectType): void {
  const seen = new Set<string>();
  for (const s of subjects) {
    if (seen.has(s)) throw new PollenError('INVALID_ARGUMENT', `Subject "${s}" is listed twice`);
    seen.add(s);
    checkSubjectSyntax(s, type);
  }
}

/**
 * Issue one token per subject. Every name is checked before the first token is signed (local) or
 * before anything is sent (remote). `onProgress(done, total)` follows the signing.
 */
export async function issueEnrollmentTokens(
  issuer: TokenIssuer,
  req: TokenRequest,
  onProgress?: (done: number, total: number) => void,
): Promise<IssuedTokens> {
  // The role (user tokens) and hosts (server and relay tokens), checked before anything is signed or sent.
  const extra = {
    ...(req.role !== undefined && { role: req.role }),
    ...(req.hosts?.length && { hosts: checkTokenHosts(req.hosts, req.type) }),
    ...(req.org !== undefined && { org: checkedOrg(req.org) }),
  };
  if (issuer.kind === 'remote') {
    checkSubjects(req.subjects, req.type);
    // Loaded on demand: undici is only needed in remote mode.
    const { CertServiceClient } = await import('./cert-service-client.js');
    const client = new CertServiceClient({ url: issuer.url, apiKey: issuer.apiKey, caCert: issuer.caCert });
    try {
      const tokens = await client.createTokensInChunks(
        { subjects: req.subjects, type: req.type, ...extra },
        onProgress,
      );
      return {
        records: tokens.map((t) => ({
          subject: t.subject,
          tokenId: t.tokenId,
          subjectType: req.type,
          expiresAt: t.expiresAt,
          token: t.token,
          ...(extra.hosts && { hosts: extra.hosts }),
        })),
        mode: 'remote',
        url: issuer.url,
      };
    } finally {
      await client.close();
    }
  }
  const policy = loadPolicy(issuer.policyPath);
  const signer = loadTokenSigner(issuer.caDir, {
    ...(issuer.passphrase && { passphrase: issuer.passphrase }),
  });
  const issued = await issueTokens(signer, req.subjects, { type: req.type, ...extra, policy }, onProgress);
  return {
    records: issued.map(({ token, claims: c }) => ({
      subject: c.sub,
      tokenId: c.jti,
      subjectType: c.pollen.subject_type,
      expiresAt: isoSeconds(c.exp),
      token,
      ...(c.pollen.hosts && { hosts: c.pollen.hosts }),
    })),
    mode: 'local',
    caDir: resolve(issuer.caDir),
    policy: {
      source: policy.source,
      project: policy.policy.metadata.project,
      version: policy.policy.metadata.version,
      sha256: policy.sha256,
    },
  };
}
