/**
 * Enrollment tokens: compact JWS (ES256) signed by the CA folder's dedicated token key, never the
 * CA key. A token names its subject and type, carries the role for users, how many enrollments it
 * allows, the hash of the policy it was issued under and the root CA fingerprint, so a site can pin
 * the CA before it sends anything.
 *
 * Signing and verification use node:crypto directly (about 40,000 ES256 signatures per second on
 * one core); the format is plain RFC 7515/7519 and jose verifies it (see token.test.ts).
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  randomUUID,
  sign,
  verify,
} from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { PollenError } from '../errors.js';
import { certificateFingerprint } from '../pki/fingerprint.js';
import { assertValidOrg, isOrgName, MAX_HOSTS, normalizeHosts } from '../pki/names.js';
import {
  hostAllowed,
  isSiteType,
  type LoadedPolicy,
  type Policy,
  SUBJECT_TYPES,
  type SubjectType,
} from './policy.js';
import { matchNamePattern } from './policy-match.js';
import { retiredTokenVerificationKeys } from './token-retired.js';

/** The JOSE `typ` of an enrollment token (RFC 8725 §3.11: explicit typing). */
export const TOKEN_TYPE = 'pollen-enroll+jwt';
/** The `aud` of an enrollment token: only the Certificate Service accepts it. */
export const TOKEN_AUDIENCE = 'pollen-cert-service';
/** The files of a CA folder this module reads. */
export const CA_FILES = { root: 'rootCA.pem', meta: 'ca.json', tokenKey: 'token.key' } as const;

export interface PublicJwk {
  kty: 'EC';
  crv: 'P-256';
  x: string;
  y: string;
}

export interface TokenSigner {
  /** RFC 7638 JWK thumbprint of the public key. */
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  publicJwk: PublicJwk;
  /** `pollen:` + the project (CA) name. */
  issuer: string;
  /** `sha256:<hex>` of the root CA certificate. */
  rootFingerprint: string;
}

export interface TokenHeader {
  alg: 'ES256';
  kid: string;
  typ: typeof TOKEN_TYPE;
}

export interface TokenClaims {
  jti: string;
  sub: string;
  iss: string;
  aud: string;
  iat: number;
  nbf: number;
  exp: number;
  pollen: {
    subject_type: SubjectType;
    /** Users: `[role]`; sites: `[]`. */
    roles: string[];
    max_uses: number;
    policy: { project: string; version: string; sha256: string };
    root_ca_fingerprint: string;
    /** The organisation the certificate names (`O=`); absent: none. */
    org?: string;
    /**
     * Servers and relays: the DNS names and IP addresses their certificate names (its
     * subjectAltName), so clients reach them by those names. Absent: the name alone, when it is a
     * DNS name.
     */
    hosts?: string[];
  };
}

// ---------------------------------------------------------------------------------------------
// Keys

/** RFC 7638 thumbprint (SHA-256, base64url) of an EC public JWK. */
export function jwkThumbprint(jwk: PublicJwk): string {
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
  return createHash('sha256').update(canonical).digest('base64url');
}

function isP256(key: KeyObject): boolean {
  return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1';
}

/** Build a signer from a P-256 private key (the CA folder loader and the service both use it). */
export function tokenSignerFromKey(opts: {
  privateKey: KeyObject;
  issuer: string;
  rootFingerprint: string;
}): TokenSigner {
  if (opts.privateKey.type !== 'private' || !isP256(opts.privateKey))
    throw new PollenError('KEY_INVALID', 'The token key must be an EC P-256 private key', {
      hint: 'Enrollment tokens are ES256; make the key with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`.',
    });
  const publicKey = createPublicKey(opts.privateKey);
  const jwk = publicKey.export({ format: 'jwk' }) as { x: string; y: string };
  const publicJwk: PublicJwk = { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y };
  return {
    kid: jwkThumbprint(publicJwk),
    privateKey: opts.privateKey,
    publicKey,
    publicJwk,
    issuer: opts.issuer,
    rootFingerprint: opts.rootFingerprint,
  };
}

function caFile(dir: string, name: string): string {
  const path = join(dir, name);
  if (!existsSync(path))
    throw new PollenError('CA_NOT_FOUND', `Not a Pollen CA folder: ${path} is missing`, {
      detail: `looked for ${name} in ${dir}`,
    });
  return path;
}

/** The project name (`ca.json` → `name`) of a CA folder. */
export function readCaName(caDir: string): string {
  const dir = resolve(caDir);
  const path = caFile(dir, CA_FILES.meta);
  let meta: unknown;
  try {
    meta = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new PollenError('CA_NOT_FOUND', `Not a Pollen CA folder: ${path} is not valid JSON`, { cause: e });
  }
  const name = (meta as { name?: unknown } | null)?.name;
  if (typeof name !== 'string' || name.trim() === '')
    throw new PollenError('CA_NOT_FOUND', `Not a Pollen CA folder: ${path} has no "name"`);
  return name;
}

/**
 * Load the token signer of a CA folder made by `pollen cert init`: `token.key` (PKCS#8 PEM,
 * P-256), `rootCA.pem` (for the fingerprint) and `ca.json` (for the issuer name).
 */
export function loadTokenSigner(caDir: string, opts: { passphrase?: string } = {}): TokenSigner {
  const dir = resolve(caDir);
  if (!existsSync(dir) || !statSync(dir).isDirectory())
    throw new PollenError('CA_NOT_FOUND', `No CA folder at ${dir}`);
  const rootPath = caFile(dir, CA_FILES.root);
  const keyPath = caFile(dir, CA_FILES.tokenKey);
  const name = readCaName(dir);
  let rootFingerprint: string;
  try {
    rootFingerprint = certificateFingerprint(readFileSync(rootPath, 'utf8'));
  } catch (e) {
    throw new PollenError('CERT_INVALID', `${rootPath} is not a PEM certificate`, { cause: e });
  }
  const pem = readFileSync(keyPath, 'utf8');
  if (pem.includes('ENCRYPTED') && opts.passphrase === undefined)
    throw new PollenError('CA_LOCKED', `The token key ${keyPath} is encrypted`);
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(
      opts.passphrase === undefined
        ? { key: pem, format: 'pem' }
        : { key: pem, format: 'pem', passphrase: opts.passphrase },
    );
  } catch (e) {
    if (opts.passphrase !== undefined && pem.includes('ENCRYPTED'))
      throw new PollenError('CA_LOCKED', `Wrong passphrase for ${keyPath}`, { cause: e });
    throw new PollenError('KEY_INVALID', `${keyPath} is not a PEM private key`, { cause: e });
  }
  if (!isP256(privateKey))
    throw new PollenError('KEY_INVALID', `${keyPath} must be an EC P-256 key (tokens are ES256)`);
  return tokenSignerFromKey({ privateKey, issuer: `pollen:${name}`, rootFingerprint });
}

export interface TokenVerifier {
  keys: Map<string, KeyObject>;
  issuer: string;
  rootFingerprint: string;
}

/**
 * What a verifier needs from a CA folder: the token public keys by kid (the current one and the
 * retired ones still in their overlap), the issuer and the root fingerprint. Reads `token.pub`
 * (SPKI PEM) when the folder has one, else derives it from token.key.
 */
export function loadTokenVerifier(caDir: string, now = new Date()): TokenVerifier {
  const v = loadCurrentTokenVerifier(caDir);
  for (const [kid, key] of retiredTokenVerificationKeys(caDir, now))
    if (!v.keys.has(kid)) v.keys.set(kid, key);
  return v;
}

function loadCurrentTokenVerifier(caDir: string): TokenVerifier {
  const dir = resolve(caDir);
  const pubPath = join(dir, 'token.pub');
  if (existsSync(pubPath) && !existsSync(join(dir, CA_FILES.tokenKey))) {
    let publicKey: KeyObject;
    try {
      publicKey = createPublicKey(readFileSync(pubPath, 'utf8'));
    } catch (e) {
      throw new PollenError('KEY_INVALID', `${pubPath} is not a PEM public key`, { cause: e });
    }
    if (!isP256(publicKey)) throw new PollenError('KEY_INVALID', `${pubPath} must be an EC P-256 key`);
    const jwk = publicKey.export({ format: 'jwk' }) as { x: string; y: string };
    const rootPath = caFile(dir, CA_FILES.root);
    let rootFingerprint: string;
    try {
      rootFingerprint = certificateFingerprint(readFileSync(rootPath, 'utf8'));
    } catch (e) {
      throw new PollenError('CERT_INVALID', `${rootPath} is not a PEM certificate`, { cause: e });
    }
    return {
      keys: new Map([[jwkThumbprint({ kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y }), publicKey]]),
      issuer: `pollen:${readCaName(dir)}`,
      rootFingerprint,
    };
  }
  const signer = loadTokenSigner(dir);
  return {
    keys: new Map([[signer.kid, signer.publicKey]]),
    issuer: signer.issuer,
    rootFingerprint: signer.rootFingerprint,
  };
}

// ---------------------------------------------------------------------------------------------
// Subjects

const SITE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const EMAIL = /^[A-Za-z0-9._+-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.[A-Za-z]{2,63}$/;

/**
 * Check a subject's syntax: a site name is 1-64 characters of letters, digits, `.`, `_`, `-`
 * (it becomes a certificate common name and a file name); a user is an e-mail address.
 */
export function checkSubjectSyntax(subject: string, type: SubjectType): void {
  if (isSiteType(type)) {
    if (!SITE_NAME.test(subject) || subject.includes('..'))
      throw new PollenError(
        'INVALID_ARGUMENT',
        `Invalid ${type} name "${subject}": use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
      );
  } else if (subject.length > 254 || !EMAIL.test(subject) || subject.includes('..')) {
    throw new PollenError(
      'INVALID_ARGUMENT',
      `Invalid user "${subject}": a user token's subject is an e-mail address`,
    );
  }
}

/**
 * The hosts a token may carry: only for servers and relays (what clients connect to), each a DNS
 * name or IP address, in one spelling.
 */
export function checkTokenHosts(hosts: readonly string[], type: SubjectType): string[] {
  if (hosts.length > 0 && type !== 'server' && type !== 'relay')
    throw new PollenError(
      'INVALID_ARGUMENT',
      `--host applies to server and relay tokens, not to ${type} tokens`,
      {
        hint: 'Add --server (or --relay), or leave out --host.',
      },
    );
  return normalizeHosts(hosts);
}

// ---------------------------------------------------------------------------------------------
// Issuing

export interface IssueOptions {
  subject: string;
  /** Default `client`. */
  type?: SubjectType;
  /** Users only; default `policy.user.default_role`. */
  role?: string;
  /** Servers and relays only: DNS names and IP addresses for the certificate (site.host_patterns). */
  hosts?: readonly string[];
  /** The organisation the certificate will name (`O=`); the policy's `orgs` may restrict it. */
  org?: string;
  policy: LoadedPolicy;
  now?: Date;
}

export interface IssuedToken {
  token: string;
  claims: TokenClaims;
}

const b64url = (s: string) => Buffer.from(s, 'utf8').toString('base64url');

interface Prepared {
  type: SubjectType;
  roles: string[];
  hosts: string[];
  org: string | undefined;
  iat: number;
  exp: number;
  headerB64: string;
  policyClaim: TokenClaims['pollen']['policy'];
}

function prepare(signer: TokenSigner, opts: Omit<IssueOptions, 'subject'>): Prepared {
  const type = opts.type ?? 'client';
  if (!SUBJECT_TYPES.includes(type))
    throw new PollenError(
      'INVALID_ARGUMENT',
      `Unknown subject type "${String(type)}" (${SUBJECT_TYPES.join(', ')})`,
    );
  const { policy } = opts.policy;
  let roles: string[] = [];
  if (type === 'user') {
    const role = opts.role ?? policy.user.default_role;
    if (!(policy.user.allowed_roles as readonly string[]).includes(role))
      throw new PollenError(
        'POLICY_ROLE',
        `Role "${role}" is not allowed by the policy (${opts.policy.source}); allowed: ${policy.user.allowed_roles.join(', ')}`,
      );
    roles = [role];
  } else if (opts.role !== undefined) {
    throw new PollenError('INVALID_ARGUMENT', `A role applies to user tokens only, not to ${type} tokens`, {
      hint: 'Add --user, or leave out -r/--role.',
    });
  }
  const hosts = checkTokenHosts(opts.hosts ?? [], type);
  const refused = hosts.filter((h) => !hostAllowed(policy, h));
  if (refused.length > 0)
    throw new PollenError(
      'POLICY_HOST',
      `Host ${refused.join(', ')} is not allowed by the policy's site.host_patterns (${policy.site.host_patterns.join(', ')}) (${opts.policy.source})`,
    );
  checkTokenOrg(policy, opts.org, opts.policy.source);
  const now = opts.now ?? new Date();
  const iat = Math.floor(now.getTime() / 1000);
  const header: TokenHeader = { alg: 'ES256', kid: signer.kid, typ: TOKEN_TYPE };
  return {
    type,
    roles,
    hosts,
    org: opts.org,
    iat,
    exp: iat + Math.floor(policy.token.validity_ms / 1000),
    headerB64: b64url(JSON.stringify(header)),
    policyClaim: {
      project: policy.metadata.project,
      version: policy.metadata.version,
      sha256: opts.policy.sha256,
    },
  };
}

/**
 * A token's organisation: a valid `O=`, and one the policy lists when it lists any (then a token
 * must name one). Checked at issuance and again at enrollment (the policy may have changed).
 */
export function checkTokenOrg(policy: Policy, org: string | undefined, source: string): void {
  if (org !== undefined) assertValidOrg(org);
  if (!policy.orgs) return;
  if (org === undefined)
    throw new PollenError('POLICY_ORG', `The policy (${source}) lists organisations: name one with --org`, {
      data: { orgs: policy.orgs },
    });
  if (!policy.orgs.includes(org))
    throw new PollenError(
      'POLICY_ORG',
      `Organisation "${org}" is not one the policy lists (${policy.orgs.join(', ')}) (${source})`,
    );
}

function checkSubject(subject: string, p: Prepared, loaded: LoadedPolicy): void {
  checkSubjectSyntax(subject, p.type);
  const pattern = loaded.policy.site.name_pattern;
  if (isSiteType(p.type) && !matchNamePattern(pattern, subject))
    throw new PollenError(
      'POLICY_SITE_NAME',
      `Site name "${subject}" does not match the policy's site.name_pattern "${pattern}" (${loaded.source})`,
    );
}

function signOne(signer: TokenSigner, subject: string, p: Prepared, loaded: LoadedPolicy): IssuedToken {
  const claims: TokenClaims = {
    jti: randomUUID(),
    sub: subject,
    iss: signer.issuer,
    aud: TOKEN_AUDIENCE,
    iat: p.iat,
    nbf: p.iat,
    exp: p.exp,
    pollen: {
      subject_type: p.type,
      roles: p.roles,
      max_uses: loaded.policy.token.max_uses,
      policy: p.policyClaim,
      root_ca_fingerprint: signer.rootFingerprint,
      ...(p.org !== undefined && { org: p.org }),
      ...(p.hosts.length > 0 && { hosts: p.hosts }),
    },
  };
  const input = `${p.headerB64}.${b64url(JSON.stringify(claims))}`;
  const sig = sign('sha256', Buffer.from(input), { key: signer.privateKey, dsaEncoding: 'ieee-p1363' });
  return { token: `${input}.${sig.toString('base64url')}`, claims };
}

/**
 * Issue one token under the policy: a site name must match `site.name_pattern`
 * (POLICY_SITE_NAME); a user gets `role ?? user.default_role`, which must be allowed (POLICY_ROLE).
 */
export function issueToken(signer: TokenSigner, opts: IssueOptions): IssuedToken {
  const p = prepare(signer, opts);
  checkSubject(opts.subject, p, opts.policy);
  return signOne(signer, opts.subject, p, opts.policy);
}

/**
 * Issue tokens for many subjects (all checked before the first is signed; duplicates refused).
 * Yields to the event loop between chunks so a service stays responsive; `onProgress` is called
 * after each chunk with (done, total).
 */
export async function issueTokens(
  signer: TokenSigner,
  subjects: readonly string[],
  opts: Omit<IssueOptions, 'subject'>,
  onProgress?: (done: number, total: number) => void,
): Promise<IssuedToken[]> {
  const p = prepare(signer, opts);
  const seen = new Set<string>();
  for (const s of subjects) {
    if (seen.has(s)) throw new PollenError('INVALID_ARGUMENT', `Subject "${s}" is listed twice`);
    seen.add(s);
    checkSubject(s, p, opts.policy);
  }
  const out: IssuedToken[] = [];
  const chunk = 1000;
  for (let i = 0; i < subjects.length; i += chunk) {
    const end = Math.min(subjects.length, i + chunk);
    for (let j = i; j < end; j++) out.push(signOne(signer, subjects[j]!, p, opts.policy));
    onProgress?.(end, subjects.length);
    if (end < subjects.length) await new Promise<void>((r) => setImmediate(r));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Decoding and verification

const claimsSchema = z.object({
  jti: z.string().min(1),
  sub: z.string().min(1),
  iss: z.string(),
  aud: z.string(),
  iat: z.number().int(),
  nbf: z.number().int(),
  exp: z.number().int(),
  pollen: z.object({
    subject_type: z.enum(SUBJECT_TYPES),
    roles: z.array(z.string()),
    max_uses: z.number().int().min(1),
    policy: z.object({ project: z.string(), version: z.string(), sha256: z.string() }),
    root_ca_fingerprint: z.string(),
    org: z.string().refine(isOrgName).optional(),
    hosts: z.array(z.string()).max(MAX_HOSTS).optional(),
  }),
});

const MAX_TOKEN_LENGTH = 8192;
const B64URL = /^[A-Za-z0-9_-]+$/;

function b64urlDecode(part: string): Buffer | undefined {
  if (!B64URL.test(part)) return undefined;
  const buf = Buffer.from(part, 'base64url');
  // Canonical encodings only: no two strings decode to the same bytes.
  return buf.toString('base64url') === part ? buf : undefined;
}

function parseJsonObject(buf: Buffer | undefined): Record<string, unknown> | undefined {
  if (!buf) return undefined;
  try {
    const v: unknown = JSON.parse(buf.toString('utf8'));
    return v !== null && typeof v === 'object' && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

interface Parts {
  header: Record<string, unknown>;
  claims: TokenClaims;
  signingInput: string;
  signature: Buffer;
}

function split(token: string): Parts | undefined {
  const t = token.trim();
  if (t.length > MAX_TOKEN_LENGTH) return undefined;
  const parts = t.split('.');
  if (parts.length !== 3) return undefined;
  const [h, p, s] = parts as [string, string, string];
  const header = parseJsonObject(b64urlDecode(h));
  const payload = parseJsonObject(b64urlDecode(p));
  const signature = s === '' ? Buffer.alloc(0) : b64urlDecode(s);
  if (!header || !payload || !signature) return undefined;
  const claims = claimsSchema.safeParse(payload);
  if (!claims.success) return undefined;
  return { header, claims: claims.data, signingInput: `${h}.${p}`, signature };
}

const malformed = () =>
  new PollenError('TOKEN_INVALID', 'Not a Pollen enrollment token (malformed JWT or missing claims)');

/** Read a token's claims WITHOUT verifying it (for display). Malformed → TOKEN_INVALID. */
export function decodeToken(token: string): TokenClaims {
  const parts = split(token);
  if (!parts) throw malformed();
  return parts.claims;
}

/** Read a token's protected header WITHOUT verifying it. */
export function decodeTokenHeader(token: string): { alg?: unknown; kid?: unknown; typ?: unknown } {
  const parts = split(token);
  if (!parts) throw malformed();
  return parts.header;
}

export interface VerifyOptions {
  /** Public (or private) P-256 keys by `kid`. */
  keys: ReadonlyMap<string, KeyObject> | ((kid: string) => KeyObject | undefined);
  /** Default `pollen-cert-service`. */
  audience?: string;
  /** When given, `iss` must equal it. */
  issuer?: string;
  now?: Date;
  /** Allowed clock skew for exp/nbf/iat; default 60 s. */
  clockToleranceSec?: number;
}

/** One message for every failed check: a caller learns nothing about which one failed. */
const invalidToken = () => new PollenError('TOKEN_INVALID', 'The enrollment token is invalid');

/**
 * Verify signature and claims. Only ES256 with a P-256 key found by `kid` is accepted (`none`,
 * HS256 and every other alg are refused). Bad signature, kid, alg, typ, aud or iss → TOKEN_INVALID
 * (uniform); otherwise expired → TOKEN_EXPIRED, not yet valid → TOKEN_NOT_YET_VALID.
 */
export function verifyToken(token: string, opts: VerifyOptions): TokenClaims {
  if (typeof token !== 'string') throw invalidToken();
  const parts = split(token);
  if (!parts) throw invalidToken();
  const { header, claims, signingInput, signature } = parts;
  const headerKeys = Object.keys(header);
  if (
    header['alg'] !== 'ES256' ||
    header['typ'] !== TOKEN_TYPE ||
    typeof header['kid'] !== 'string' ||
    headerKeys.some((k) => k !== 'alg' && k !== 'typ' && k !== 'kid')
  )
    throw invalidToken();
  const kid = header['kid'];
  const key = typeof opts.keys === 'function' ? opts.keys(kid) : opts.keys.get(kid);
  if (!key || key.type === 'secret' || !isP256(key) || signature.length !== 64) throw invalidToken();
  let ok = false;
  try {
    ok = verify('sha256', Buffer.from(signingInput), { key, dsaEncoding: 'ieee-p1363' }, signature);
  } catch {
    ok = false;
  }
  if (!ok) throw invalidToken();
  if (claims.aud !== (opts.audience ?? TOKEN_AUDIENCE)) throw invalidToken();
  if (opts.issuer !== undefined && claims.iss !== opts.issuer) throw invalidToken();
  const now = Math.floor((opts.now ?? new Date()).getTime() / 1000);
  const tol = opts.clockToleranceSec ?? 60;
  if (claims.exp <= now - tol) throw new PollenError('TOKEN_EXPIRED', 'The enrollment token has expired');
  if (claims.nbf > now + tol || claims.iat > now + tol)
    throw new PollenError('TOKEN_NOT_YET_VALID', 'The enrollment token is not valid yet');
  // A token signed with the right key still names only what `token generate` could have named:
  // the subject becomes a certificate name, a URI and a file name; hosts become DNS and IP SANs.
  try {
    checkSubjectSyntax(claims.sub, claims.pollen.subject_type);
  } catch (e) {
    throw new PollenError(
      'TOKEN_INVALID',
      `The enrollment token names ${JSON.stringify(claims.sub)}, which is not a valid ${claims.pollen.subject_type} name`,
      {
        cause: e,
        hint: 'Issue a new token with `pollen token generate`: site names use letters, digits, . _ and -, users an e-mail address.',
      },
    );
  }
  try {
    checkTokenHosts(claims.pollen.hosts ?? [], claims.pollen.subject_type);
  } catch (e) {
    throw new PollenError('TOKEN_INVALID', 'The enrollment token names hosts a certificate cannot carry', {
      cause: e,
      hint: 'Issue a new token with `pollen token generate --server --host NAME`: DNS names or IP addresses, for servers and relays only.',
    });
  }
  return claims;
}
