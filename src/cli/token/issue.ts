/** What `token generate` and `token batch` share: from flags to an issuer, then issuing. */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SubjectType } from '../../enrollment/policy.js';
import {
  checkSubjects,
  type IssuedTokens,
  issueEnrollmentTokens,
  type TokenIssuer,
} from '../../enrollment/token-issue.js';
import { PollenError } from '../../errors.js';
import { type AdminCredentialFlags, adminCredential } from '../cert-service-credential.js';
import type { Output } from '../output.js';

export interface TokenIssueOptions extends AdminCredentialFlags {
  user?: boolean;
  relay?: boolean;
  server?: boolean;
  role?: string;
  /** Server and relay tokens: DNS names and IP addresses for the certificate (repeatable --host). */
  host?: string[];
  /** The organisation the certificates will name (`O=`). */
  org?: string;
  ca?: string;
  policy?: string;
  certService?: string;
  caCert?: string;
  force?: boolean;
  caPassphrase?: string;
  /** Which of these were given on the command line rather than by their variables. */
  given: { ca: boolean; certService: boolean; policy: boolean };
}

export function subjectType(f: TokenIssueOptions): SubjectType {
  return f.user ? 'user' : f.relay ? 'relay' : f.server ? 'server' : 'client';
}

export const nonEmpty = (v: string | undefined) => (v === undefined || v.trim() === '' ? undefined : v);

/**
 * Local or remote: remote when a Certificate Service URL is given on the command line, or set
 * in the environment while -c is not given on the command line.
 */
async function issuerOf(f: TokenIssueOptions): Promise<TokenIssuer> {
  const url = nonEmpty(f.certService);
  const ca = nonEmpty(f.ca);
  const remote = url !== undefined && (f.given.certService || !f.given.ca);
  if (remote) {
    if (f.given.policy)
      throw new PollenError(
        'USAGE',
        '-p/--policy applies to local mode; the Certificate Service applies its own policy',
      );
    const apiKey = await adminCredential(f);
    let caCertPath = nonEmpty(f.caCert);
    if (caCertPath === undefined && ca !== undefined) {
      caCertPath = join(ca, 'rootCA.pem');
      if (!existsSync(caCertPath)) {
        if (f.given.ca)
          throw new PollenError('CA_NOT_FOUND', `No root CA to trust at ${caCertPath}`, {
            hint: 'Give the project root certificate with --ca-cert FILE (or POLLEN_CA_CERT).',
          });
        caCertPath = undefined;
      }
    }
    let caCert: string | undefined;
    if (caCertPath !== undefined) {
      try {
        caCert = readFileSync(caCertPath, 'utf8');
      } catch {
        throw new PollenError('FILE_NOT_FOUND', `Cannot read the root CA to trust: ${caCertPath}`);
      }
    }
    return { kind: 'remote', url, apiKey, caCert };
  }
  if (!ca)
    throw new PollenError('CA_NOT_FOUND', 'CA path is required', {
      hint: 'Pass -c/--ca DIR (the folder made by `pollen cert init`) or set POLLEN_CA_PATH; or use a Certificate Service with --cert-service URL and --login SUPERLINK or --api-key KEY.',
    });
  return {
    kind: 'local',
    caDir: ca,
    policyPath: nonEmpty(f.policy),
    ...(f.caPassphrase && { passphrase: f.caPassphrase }),
  };
}

/** Issue tokens in either mode; names are checked first in both, before the flags of the mode. */
export async function issue(
  subjects: string[],
  f: TokenIssueOptions,
  out: Output,
  progress: boolean,
): Promise<IssuedTokens> {
  const type = subjectType(f);
  if (f.role !== undefined && type !== 'user')
    throw new PollenError('USAGE', '-r/--role applies to user tokens only; add --user');
  checkSubjects(subjects, type);
  const issuer = await issuerOf(f);
  return issueEnrollmentTokens(
    issuer,
    {
      subjects,
      type,
      ...(f.role !== undefined && { role: f.role }),
      ...(f.host?.length && { hosts: f.host }),
      ...(f.org !== undefined && { org: f.org }),
    },
    (done, total) => {
      if (progress && total >= 1000 && (done % 1000 === 0 || done === total))
        out.progress(`${done}/${total} tokens signed`);
    },
  );
}

export function refuseExisting(path: string, force: boolean | undefined): void {
  if (!force && existsSync(path))
    throw new PollenError('FILE_EXISTS', `Already exists: ${path}`, {
      hint: 'Tokens in it may still be valid; choose another path, or pass --force to overwrite.',
    });
}
