/**
 * Auto-enrollment of a startup kit (`pollen start`), as in FLARE's "Client Auto-Enrollment", with
 * the weaknesses fixed:
 *
 * - the root CA is pinned from the token's `root_ca_fingerprint` BEFORE anything is sent: the
 *   first connection trusts nothing and only reads the root (from the presented chain or
 *   `GET /v1/ca`); every request after that trusts that root alone;
 * - the project root also certifies every participant's server and relay certificate, so a
 *   certificate from it is not enough: the Certificate Service is recognised by its URI identity
 *   `pollen://PROJECT/service/cert-service`, required (with the host name) on every connection
 *   that carries a token, a CSR, a poll proof or a renewal, and checked at the pin already;
 * - the private key is made here, saved 0600 before the CSR leaves, and reused while a request
 *   is pending (`startup/enrollment_state.json`): a restarted `pollen start` resumes polling the
 *   same request with the same key, proving possession on every poll;
 * - the returned certificate is checked (our key, chains to the pinned root, our name) before it
 *   is saved, atomically;
 * - a certificate past two thirds of its life is renewed over mutual TLS with a new key.
 *
 * Library code: no process.exit, no fixed sleeps; the clock, sleep and randomness are injectable.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  sign,
  webcrypto,
  X509Certificate,
} from 'node:crypto';
import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { isIP } from 'node:net';
import { relative } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import tls from 'node:tls';
import { Agent, fetch } from 'undici';
import { z } from 'zod';
import { ERROR_CODES, type ErrorCode, PollenError } from '../errors.js';
import { createCsr } from '../pki/csr.js';
import { certificateFingerprint, normaliseFingerprint, sameFingerprint } from '../pki/fingerprint.js';
import { describeKey, generateKeyPair, keyTypeInfo, privateKeyToPem, x509 } from '../pki/keys.js';
import { isCertServiceIdentity, readProfile, renewalTime } from '../pki/profiles.js';
import { writeFileAtomic, writeSecretFile } from '../util/files.js';
import { checkCertServiceIdentity, NOT_CERT_SERVICE, notCertServiceError } from './cert-service-client.js';
import { checkCertServiceUrl, type LoadedKit, loadKit, tokenSubjectType } from './kit.js';
import { chainsToRoot, splitPemCertificates } from './kit-manifest.js';
import { decodeToken, type TokenClaims } from './token.js';

// ---------------------------------------------------------------------------------------------
// Public API

export type EnrollEvent =
  | { kind: 'certificate-valid'; message: string; notAfter: Date; renewAt: Date }
  | { kind: 'certificate-unusable'; message: string; reason: string }
  | { kind: 'renewing'; message: string }
  | { kind: 'renewal-failed'; message: string; error: PollenError }
  | { kind: 'renewal-skipped'; message: string }
  | { kind: 'revocation-unchecked'; message: string; error: PollenError }
  | { kind: 'pinned'; message: string; fingerprint: string; source: 'tls-chain' | 'ca-endpoint' }
  | { kind: 'key-created'; message: string; path: string }
  | { kind: 'key-reused'; message: string; path: string }
  | { kind: 'submitted'; message: string }
  | { kind: 'pending'; message: string; requestId: string; waitedMs: number; nextPollMs: number }
  | { kind: 'retrying'; message: string; error: PollenError; delayMs: number }
  | { kind: 'issued'; message: string; certPath: string }
  | { kind: 'token-removed'; message: string; path: string };

export interface EnrollKitOptions {
  /** The enrollment token (the CLI passes --token or POLLEN_ENROLLMENT_TOKEN); default startup/enrollment_token. */
  token?: string;
  /** The Certificate Service (the CLI passes --cert-service or POLLEN_CERT_SERVICE_URL); default enrollment.json. */
  certServiceUrl?: string;
  /** Renew a certificate past its renewal time (default true); 'now' renews a valid one at once. */
  renew?: boolean | 'now';
  /** First delay between polls; when set it replaces the service's retryAfter. Default: retryAfter, or 2 s. */
  pollIntervalMs?: number;
  /** Cap of the exponential backoff (default 60 s; a service retryAfter above it is still honoured). */
  maxPollIntervalMs?: number;
  /** Give up waiting (for approval or for the service) after this long; default: never. */
  maxWaitMs?: number;
  /** Per-request timeout (default 30 s). */
  requestTimeoutMs?: number;
  now?: () => Date;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  random?: () => number;
  signal?: AbortSignal;
  onProgress?: (event: EnrollEvent) => void;
}

export interface CertificateInfo {
  path: string;
  keyPath: string;
  rootCaPath: string;
  chainPath: string;
  serial: string;
  fingerprint: string;
  notBefore: Date;
  notAfter: Date;
  renewAt: Date;
}

export interface EnrollResult {
  /** existing: a valid certificate was there; enrolled: a new one was issued; renewed: replaced over mTLS. */
  action: 'existing' | 'enrolled' | 'renewed';
  kit: LoadedKit;
  certificate: CertificateInfo;
  rootCaFingerprint: string;
  /** The pending request that was approved (enrolled after waiting). */
  requestId?: string;
  /** How long enrollment waited for approval or the service. */
  waitedMs?: number;
  /** A due renewal that failed or could not be tried; the current certificate is still valid. */
  renewalError?: { code: ErrorCode; message: string };
}

/**
 * Make sure the kit holds a valid certificate: keep a valid one (renewing it when due), or enroll
 * with the Certificate Service. Returns what happened; throws PollenError on failure
 * (TOKEN_MISSING, CA_FINGERPRINT_MISMATCH, ENROLLMENT_REJECTED, ENROLLMENT_PENDING after
 * maxWaitMs, UNAVAILABLE, CERT_REVOKED, …).
 *
 * A valid certificate is checked against the Certificate Service's CRL when the service is known
 * (a revoked one fails with CERT_REVOKED); a service that cannot be reached only gives a
 * `revocation-unchecked` event, so sites start while the service is down.
 */
export async function enrollKit(
  kitDir: string | LoadedKit,
  options: EnrollKitOptions = {},
): Promise<EnrollResult> {
  const kit = typeof kitDir === 'string' ? loadKit(kitDir) : kitDir;
  const ctx = new Ctx(kit, options);
  finishInterruptedRenewal(kit);
  const existing = checkExistingCertificate(kit, ctx.now(), kit.enrollment?.rootCaFingerprint ?? null);
  if (existing.ok) {
    ctx.emit({
      kind: 'certificate-valid',
      message: `certificate ${rel(kit, kit.paths.cert)} is valid until ${existing.info.notAfter.toISOString()} (renewal from ${existing.info.renewAt.toISOString()})`,
      notAfter: existing.info.notAfter,
      renewAt: existing.info.renewAt,
    });
    const rootCaFingerprint = certificateFingerprint(existing.root);
    const url = options.certServiceUrl ?? kit.enrollment?.certServiceUrl;
    if (url) await checkRevocation(ctx, existing, url);
    if (options.renew === false || (options.renew !== 'now' && ctx.now() < existing.info.renewAt))
      return { action: 'existing', kit, certificate: existing.info, rootCaFingerprint };
    if (!url) {
      const message = 'the certificate is due for renewal, but no Certificate Service is configured';
      ctx.emit({ kind: 'renewal-skipped', message });
      return {
        action: 'existing',
        kit,
        certificate: existing.info,
        rootCaFingerprint,
        renewalError: { code: 'INVALID_ARGUMENT', message },
      };
    }
    try {
      const info = await renewCertificate(ctx, existing, checkCertServiceUrl(url));
      return { action: 'renewed', kit, certificate: info, rootCaFingerprint };
    } catch (e) {
      const err = e instanceof PollenError ? e : toClientError(e);
      // A revoked certificate does not "stay in use": the federation refuses it too.
      if (err.code === 'CERT_REVOKED')
        throw new PollenError(
          'CERT_REVOKED',
          `The certificate ${rel(kit, kit.paths.cert)} was revoked (the Certificate Service refused to renew it); ask the project admin for a new token`,
          { cause: err, hint: revokedHint(kit) },
        );
      ctx.emit({
        kind: 'renewal-failed',
        message: `renewal failed (${err.code}): ${err.message}; the current certificate stays in use`,
        error: err,
      });
      return {
        action: 'existing',
        kit,
        certificate: existing.info,
        rootCaFingerprint,
        renewalError: { code: err.code, message: err.message },
      };
    }
  }
  if (existing.reason)
    ctx.emit({
      kind: 'certificate-unusable',
      message: `no usable certificate: ${existing.reason}`,
      reason: existing.reason,
    });
  return enrollNew(ctx, existing);
}

/** Proof of possession for `POST /v1/requests/ID/status` (docs/api.md). */
export function pollProof(
  requestId: string,
  key: KeyObject,
  now: Date,
): { timestamp: number; signature: string } {
  const timestamp = now.getTime();
  const info = describeKey(key);
  const hash = info.kind === 'ec' && info.curve === 'P-384' ? 'sha384' : 'sha256';
  const signature = sign(hash, Buffer.from(`pollen-poll:v1:${requestId}:${timestamp}`, 'utf8'), {
    key,
    dsaEncoding: 'der',
  });
  return { timestamp, signature: signature.toString('base64') };
}

/** SHA-256 (hex) of a key's SubjectPublicKeyInfo: how state and certificates are matched to keys. */
export function publicKeyId(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return createHash('sha256')
    .update(pub.export({ type: 'spki', format: 'der' }))
    .digest('hex');
}

// ---------------------------------------------------------------------------------------------
// Context: clock, sleep, progress, backoff

class Ctx {
  readonly now: () => Date;
  readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly random: () => number;
  readonly started: number;
  private attempt = 0;

  constructor(
    readonly kit: LoadedKit,
    readonly opts: EnrollKitOptions,
  ) {
    this.now = opts.now ?? (() => new Date());
    this.sleep = opts.sleep ?? ((ms, signal) => delay(ms, undefined, signal ? { signal } : undefined));
    this.random = opts.random ?? Math.random;
    this.started = this.now().getTime();
  }

  emit(e: EnrollEvent): void {
    this.opts.onProgress?.(e);
  }

  waited(): number {
    return this.now().getTime() - this.started;
  }

  /** The next delay: exponential (×1.5) from the first interval, ±20 % jitter, capped; at least `minMs`. */
  nextDelay(minMs: number): number {
    const base = this.opts.pollIntervalMs ?? 2_000;
    const cap = Math.max(this.opts.maxPollIntervalMs ?? 60_000, base);
    const backoff = Math.min(cap, base * 1.5 ** this.attempt) * (0.8 + 0.4 * this.random());
    this.attempt++;
    return Math.round(Math.max(minMs, Math.min(cap, backoff)));
  }

  /**
   * The delay to wait before the next try, shortened so the last try happens at maxWaitMs;
   * undefined when maxWaitMs has passed (give up now).
   */
  clampDelay(ms: number): number | undefined {
    if (this.opts.maxWaitMs === undefined) return ms;
    const left = this.opts.maxWaitMs - this.waited();
    return left <= 0 ? undefined : Math.min(ms, left);
  }

  async wait(ms: number): Promise<void> {
    this.opts.signal?.throwIfAborted();
    await this.sleep(ms, this.opts.signal);
  }

  get timeoutMs(): number {
    return this.opts.requestTimeoutMs ?? 30_000;
  }
}

const rel = (kit: LoadedKit, path: string) => relative(kit.dir, path) || path;

function seconds(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

// ---------------------------------------------------------------------------------------------
// The certificate already in the kit

type Existing =
  | {
      ok: true;
      info: CertificateInfo;
      leaf: X509Certificate;
      root: X509Certificate;
      pool: X509Certificate[];
      key: KeyObject;
    }
  | { ok: false; reason: string | null; expired: boolean };

function readIf(path: string): string | null {
  return existsSync(path) ? readFileSync(path, 'utf8') : null;
}

function certificateInfo(kit: LoadedKit, leaf: X509Certificate): CertificateInfo {
  const notBefore = new Date(leaf.validFrom);
  const notAfter = new Date(leaf.validTo);
  return {
    path: kit.paths.cert,
    keyPath: kit.paths.key,
    rootCaPath: kit.paths.rootCa,
    chainPath: kit.paths.chain,
    serial: leaf.serialNumber.toLowerCase(),
    fingerprint: certificateFingerprint(leaf),
    notBefore,
    notAfter,
    renewAt: renewalTime(notBefore, notAfter),
  };
}

/** Is this certificate about our name and type? */
function nameProblem(kit: LoadedKit, leaf: X509Certificate): string | null {
  const profile = readProfile(new x509.X509Certificate(leaf.raw));
  if (profile.name !== kit.config.name) return `it is for "${profile.name}", not "${kit.config.name}"`;
  if (profile.type !== undefined && profile.type !== kit.config.type)
    return `it is a ${profile.type} certificate, not a ${kit.config.type} one`;
  if (leaf.ca) return 'it is a CA certificate';
  return null;
}

function sameKey(a: KeyObject, b: KeyObject): boolean {
  return publicKeyId(a) === publicKeyId(b);
}

/** Check startup/NAME.crt + NAME.key + rootCA.pem; a root that contradicts the pin is an error. */
export function checkExistingCertificate(kit: LoadedKit, now: Date, pin: string | null): Existing {
  const certPem = readIf(kit.paths.cert);
  if (certPem === null) return { ok: false, reason: null, expired: false };
  const name = rel(kit, kit.paths.cert);
  let certs: X509Certificate[];
  try {
    certs = splitPemCertificates(certPem);
  } catch {
    certs = [];
  }
  const leaf = certs[0];
  if (!leaf) return { ok: false, reason: `${name} is not a PEM certificate`, expired: false };
  const keyPem = readIf(kit.paths.key);
  if (keyPem === null) return { ok: false, reason: `${rel(kit, kit.paths.key)} is missing`, expired: false };
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch {
    return {
      ok: false,
      reason: `${rel(kit, kit.paths.key)} is not a readable, unencrypted private key`,
      expired: false,
    };
  }
  if (!sameKey(key, leaf.publicKey))
    return { ok: false, reason: `${name} does not belong to ${rel(kit, kit.paths.key)}`, expired: false };
  const rootPem = readIf(kit.paths.rootCa);
  if (rootPem === null)
    return { ok: false, reason: `${rel(kit, kit.paths.rootCa)} is missing`, expired: false };
  let root: X509Certificate;
  try {
    root = new X509Certificate(rootPem);
  } catch {
    return { ok: false, reason: `${rel(kit, kit.paths.rootCa)} is not a PEM certificate`, expired: false };
  }
  if (pin && !sameFingerprint(certificateFingerprint(root), pin))
    throw new PollenError(
      'CA_FINGERPRINT_MISMATCH',
      `${rel(kit, kit.paths.rootCa)} (${certificateFingerprint(root)}) is not the pinned root CA ${pin}`,
    );
  const problem = nameProblem(kit, leaf);
  if (problem) return { ok: false, reason: `${name}: ${problem}`, expired: false };
  const info = certificateInfo(kit, leaf);
  if (now > info.notAfter)
    return { ok: false, reason: `${name} expired on ${info.notAfter.toISOString()}`, expired: true };
  if (now < info.notBefore)
    return {
      ok: false,
      reason: `${name} is not valid before ${info.notBefore.toISOString()}`,
      expired: false,
    };
  let pool = certs.slice(1);
  const chainPem = readIf(kit.paths.chain);
  if (chainPem !== null) {
    try {
      pool = [...pool, ...splitPemCertificates(chainPem)];
    } catch {
      // an unreadable chain.pem only matters if the intermediate is needed
    }
  }
  const chain = chainsToRoot(leaf, pool, root, now);
  if (!chain.ok) return { ok: false, reason: `${name}: ${chain.reason}`, expired: false };
  return { ok: true, info, leaf, root, pool: chain.path.slice(1, -1), key };
}

// ---------------------------------------------------------------------------------------------
// HTTP with a pinned root

interface Session {
  base: URL;
  agent: Agent;
  root: X509Certificate;
  /** Root then verified intermediates, PEM: the only trust anchors of every request. */
  ca: string[];
}

const TLS_CODES = /^(ERR_TLS|ERR_SSL|UNABLE_TO_|SELF_SIGNED|DEPTH_ZERO|CERT_|EPROTO$|HOSTNAME_MISMATCH)/;

/** Errors worth retrying with backoff: the service is down, overloaded or failing. */
const transient = new WeakSet<PollenError>();

function errorCodeOf(e: unknown): string | undefined {
  let cur: unknown = e;
  for (let i = 0; i < 5 && cur; i++) {
    const code = (cur as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

/** `url`: the service's URL origin, when known. */
function toClientError(e: unknown, url?: string): PollenError {
  if (e instanceof PollenError) return e;
  const origin = url ? `the Certificate Service at ${url}` : 'the Certificate Service';
  const name = (e as { name?: unknown })?.name;
  if (name === 'AbortError') return new PollenError('UNAVAILABLE', 'Enrollment was cancelled', { cause: e });
  if (name === 'TimeoutError') {
    const err = new PollenError('UNAVAILABLE', `${origin} did not answer in time`, { cause: e });
    transient.add(err);
    return err;
  }
  const code = errorCodeOf(e);
  if (code === NOT_CERT_SERVICE) return notCertServiceError(url ?? 'this address', e, '; nothing was sent');
  if (code && TLS_CODES.test(code))
    return new PollenError(
      'TLS_FAILED',
      `TLS to ${origin} failed (${code}): ${code === 'ERR_TLS_CERT_ALTNAME_INVALID' ? 'its certificate is not valid for this host name' : 'its certificate does not chain to the pinned root CA'}`,
      {
        cause: e,
        hint: 'Check the Certificate Service URL; the service must present a certificate from the project CA.',
      },
    );
  const err = new PollenError('UNAVAILABLE', `Cannot reach ${origin}${code ? ` (${code})` : ''}`, {
    cause: e,
  });
  transient.add(err);
  return err;
}

function errorFromResponse(status: number, body: unknown, what: string): PollenError {
  const err = (body as { error?: Record<string, unknown> } | undefined)?.error;
  let out: PollenError;
  if (err && typeof err['code'] === 'string' && typeof err['message'] === 'string') {
    const known = Object.hasOwn(ERROR_CODES, err['code']);
    const code: ErrorCode = known
      ? (err['code'] as ErrorCode)
      : status >= 500
        ? 'UNAVAILABLE'
        : 'INVALID_REQUEST';
    const { code: _c, message: _m, hint, ...rest } = err;
    out = new PollenError(code, err['message'], {
      ...(typeof hint === 'string' && { hint }),
      ...(Object.keys(rest).length > 0 && { data: rest }),
      detail: `${what} → HTTP ${status} ${String(err['code'])}`,
    });
  } else {
    out = new PollenError(
      status >= 500 || status === 429 ? 'UNAVAILABLE' : 'INVALID_REQUEST',
      `The Certificate Service answered HTTP ${status} to ${what}`,
    );
  }
  if (status >= 500 || status === 429) transient.add(out);
  return out;
}

function combinedSignal(ctx: Ctx, timeoutMs = ctx.timeoutMs): AbortSignal {
  const t = AbortSignal.timeout(timeoutMs);
  return ctx.opts.signal ? AbortSignal.any([t, ctx.opts.signal]) : t;
}

function parseJson(text: string): unknown {
  try {
    return text === '' ? undefined : JSON.parse(text);
  } catch {
    return undefined;
  }
}

async function request(
  ctx: Ctx,
  agent: Agent,
  url: URL,
  method: 'GET' | 'POST',
  body?: unknown,
): Promise<{ status: number; json: unknown }> {
  const { status, text } = await requestText(ctx, agent, url, method, body);
  return { status, json: parseJson(text) };
}

/** One request; an answer other than 200/202 becomes a PollenError. */
async function requestText(
  ctx: Ctx,
  agent: Agent,
  url: URL,
  method: 'GET' | 'POST',
  body?: unknown,
  opts: { accept?: string; timeoutMs?: number } = {},
): Promise<{ status: number; text: string }> {
  let res: Awaited<ReturnType<typeof fetch>>;
  let text: string;
  try {
    res = await fetch(url, {
      method,
      headers: {
        accept: opts.accept ?? 'application/json',
        ...(body !== undefined && { 'content-type': 'application/json' }),
      },
      ...(body !== undefined && { body: JSON.stringify(body) }),
      dispatcher: agent,
      signal: combinedSignal(ctx, opts.timeoutMs),
    });
    text = await res.text();
  } catch (e) {
    if (ctx.opts.signal?.aborted)
      throw new PollenError('UNAVAILABLE', 'Enrollment was cancelled', { cause: e });
    throw toClientError(e, url.origin);
  }
  if (res.status !== 200 && res.status !== 202)
    throw errorFromResponse(res.status, parseJson(text), `${method} ${url.pathname}`);
  return { status: res.status, text };
}

function baseUrl(url: string): URL {
  const u = new URL(url);
  if (!u.pathname.endsWith('/')) u.pathname += '/';
  return u;
}

const endpoint = (base: URL, path: string) => new URL(path.replace(/^\//, ''), base);

/** The certificates the server presents, read over a connection that trusts nothing. */
function presentedChain(ctx: Ctx, base: URL): Promise<X509Certificate[]> {
  const host = base.hostname.replace(/^\[|\]$/g, '');
  const port = Number(base.port || 443);
  return new Promise((resolvePromise, reject) => {
    const socket = tls.connect({
      host,
      port,
      ...(isIP(host) ? {} : { servername: host }),
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1'],
    });
    socket.setTimeout(ctx.timeoutMs, () =>
      socket.destroy(Object.assign(new Error('timed out'), { name: 'TimeoutError' })),
    );
    socket.once('secureConnect', () => {
      const certs: X509Certificate[] = [];
      const seen = new Set<string>();
      let c = socket.getPeerCertificate(true) as tls.DetailedPeerCertificate | undefined;
      while (c?.raw && !seen.has(c.fingerprint256)) {
        seen.add(c.fingerprint256);
        certs.push(new X509Certificate(c.raw));
        c = c.issuerCertificate;
      }
      socket.destroy();
      resolvePromise(certs);
    });
    socket.once('error', (e) => reject(toClientError(e, base.origin)));
  });
}

const caResponse = z.object({
  root: z.string(),
  intermediate: z.string().optional(),
  chain: z.string().optional(),
});

/**
 * Find the project root at the service and check it against the pin, sending nothing but a TLS
 * handshake and (if the server does not present its root) `GET /v1/ca`. Returns a session whose
 * agent trusts that root alone.
 */
async function pinnedSession(
  ctx: Ctx,
  url: string,
  pin: string,
  mtls?: { cert: string; key: string },
): Promise<Session> {
  const base = baseUrl(url);
  const presented = await presentedChain(ctx, base);
  let found = presented.find((c) => sameFingerprint(certificateFingerprint(c), pin));
  let candidates = presented;
  let source: 'tls-chain' | 'ca-endpoint' = 'tls-chain';
  if (!found) {
    source = 'ca-endpoint';
    const open = new Agent({ connect: { rejectUnauthorized: false } });
    let json: unknown;
    try {
      json = (await request(ctx, open, endpoint(base, 'v1/ca'), 'GET')).json;
    } finally {
      await open.close();
    }
    const parsed = caResponse.safeParse(json);
    if (!parsed.success)
      throw new PollenError(
        'UNAVAILABLE',
        `${base.origin} did not answer GET /v1/ca like a Pollen Certificate Service`,
      );
    let served: X509Certificate;
    try {
      served = new X509Certificate(parsed.data.root);
    } catch {
      throw new PollenError(
        'UNAVAILABLE',
        `${base.origin} answered GET /v1/ca with an unreadable root certificate`,
      );
    }
    const fp = certificateFingerprint(served);
    if (!sameFingerprint(fp, pin))
      throw new PollenError(
        'CA_FINGERPRINT_MISMATCH',
        `The Certificate Service at ${base.origin} uses root CA ${fp}, but the token pins ${pin}; nothing was sent`,
        { data: { expected: pin, actual: fp } },
      );
    found = served;
    candidates = [
      ...splitPemCertificates(`${parsed.data.intermediate ?? ''}\n${parsed.data.chain ?? ''}`),
      ...presented,
    ];
  }
  const root = found;
  // The root alone does not make the Certificate Service: any participant's server certificate
  // chains to it too. Refuse before the token leaves (the agent checks every later connection).
  const leaf = presented[0];
  if (!leaf || !isCertServiceIdentity(leaf.subjectAltName))
    throw notCertServiceError(base.origin, undefined, '; nothing was sent');
  const intermediates = candidates.filter(
    (c) => c.ca && c.fingerprint256 !== root.fingerprint256 && chainsToRoot(c, [], root, ctx.now()).ok,
  );
  const ca = [root.toString(), ...intermediates.map((c) => c.toString())];
  ctx.emit({
    kind: 'pinned',
    message: `the Certificate Service at ${base.origin} uses the pinned root CA ${certificateFingerprint(root)}`,
    fingerprint: certificateFingerprint(root),
    source,
  });
  return { base, root, ca, agent: serviceAgent(ca, mtls) };
}

/**
 * The agent of every request that carries something of value: it trusts the pinned root (and the
 * intermediates verified under it) alone, and requires the host name and the Certificate Service
 * identity on each connection it makes, however often it reconnects.
 */
function serviceAgent(ca: string[], mtls?: { cert: string; key: string }): Agent {
  return new Agent({
    connect: { ca, checkServerIdentity: checkCertServiceIdentity, ...mtls },
    keepAliveTimeout: 5_000,
  });
}

// ---------------------------------------------------------------------------------------------
// Issued certificates

const issuedSchema = z.object({
  status: z.literal('issued'),
  certificate: z.string(),
  chain: z.string(),
});
const pendingSchema = z.object({
  status: z.literal('pending'),
  requestId: z.string().min(1).max(128),
  pollUrl: z.string().optional(),
  retryAfter: z.number().min(0).optional(),
});

interface Verified {
  leaf: X509Certificate;
  /** Intermediates between leaf and root, in order. */
  intermediates: X509Certificate[];
}

/** A certificate from the service is saved only if it carries our key, chains to the pinned root and names us. */
function verifyIssued(
  kit: LoadedKit,
  json: unknown,
  key: KeyObject,
  root: X509Certificate,
  now: Date,
): Verified {
  const parsed = issuedSchema.safeParse(json);
  if (!parsed.success)
    throw new PollenError('CERT_INVALID', 'The Certificate Service answered without a certificate');
  let certs: X509Certificate[];
  let chain: X509Certificate[];
  try {
    certs = splitPemCertificates(parsed.data.certificate);
    chain = splitPemCertificates(parsed.data.chain);
  } catch (e) {
    throw new PollenError('CERT_INVALID', 'The Certificate Service returned an unreadable certificate', {
      cause: e,
    });
  }
  const leaf = certs[0];
  if (!leaf) throw new PollenError('CERT_INVALID', 'The Certificate Service returned no certificate');
  if (!sameKey(leaf.publicKey, key))
    throw new PollenError(
      'CERT_INVALID',
      'The issued certificate does not carry our public key; it was not saved',
    );
  const result = chainsToRoot(leaf, [...certs.slice(1), ...chain], root, now);
  if (!result.ok)
    throw new PollenError(
      'CERT_INVALID',
      `The issued certificate does not chain to the pinned root CA: ${result.reason}`,
    );
  const problem = nameProblem(kit, leaf);
  if (problem) throw new PollenError('CERT_INVALID', `The issued certificate is not ours: ${problem}`);
  return { leaf, intermediates: result.path.slice(1, -1) };
}

const pem = (c: X509Certificate) => `${c.toString().trim()}\n`;

/** Save root, chain, then the certificate (its presence marks enrollment as done). */
function saveCertificate(kit: LoadedKit, v: Verified, root: X509Certificate): void {
  const rootPem = pem(root);
  if (readIf(kit.paths.rootCa)?.trim() !== rootPem.trim()) writeFileAtomic(kit.paths.rootCa, rootPem, 0o644);
  writeFileAtomic(kit.paths.chain, [...v.intermediates, root].map(pem).join(''), 0o644);
  writeFileAtomic(kit.paths.cert, pem(v.leaf), 0o644);
}

// ---------------------------------------------------------------------------------------------
// Enrollment state (restart safety)

const stateSchema = z.object({
  version: z.literal(1),
  name: z.string(),
  type: z.string(),
  keyId: z.string(),
  csr: z.string(),
  certServiceUrl: z.string(),
  rootCaFingerprint: z.string(),
  requestId: z.string().nullable(),
  pollUrl: z.string().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type EnrollmentState = z.infer<typeof stateSchema>;

export function readEnrollmentState(kit: LoadedKit): EnrollmentState | null {
  const text = readIf(kit.paths.state);
  if (text === null) return null;
  try {
    const parsed = stateSchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

function writeState(kit: LoadedKit, state: EnrollmentState): void {
  writeFileAtomic(kit.paths.state, `${JSON.stringify(state, null, 2)}\n`, 0o600);
}

function clearState(kit: LoadedKit): void {
  rmSync(kit.paths.state, { force: true });
}

// ---------------------------------------------------------------------------------------------
// Enrolling

function readToken(ctx: Ctx): string | null {
  const t = ctx.opts.token ?? readIf(ctx.kit.paths.token);
  const trimmed = t?.trim();
  return trimmed ? trimmed : null;
}

function checkTokenForKit(kit: LoadedKit, claims: TokenClaims): void {
  const expected = tokenSubjectType(kit.config.type);
  if (claims.sub !== kit.config.name || claims.pollen.subject_type !== expected)
    throw new PollenError(
      'TOKEN_SUBJECT_MISMATCH',
      `The enrollment token is for ${claims.pollen.subject_type} "${claims.sub}", but this kit is ${expected} "${kit.config.name}"`,
      {
        hint: `Use the token made for "${kit.config.name}" (\`pollen token info -t TOKEN\` shows its subject).`,
      },
    );
}

/**
 * After enrollment a single-use token is spent: startup/enrollment_token is removed when it holds
 * that token (a token given by --token / POLLEN_ENROLLMENT_TOKEN is not ours to touch). A token
 * with uses left is kept.
 */
function removeSpentToken(ctx: Ctx, claims: TokenClaims | null): void {
  const { kit } = ctx;
  if (ctx.opts.token !== undefined || claims?.pollen.max_uses !== 1) return;
  rmSync(kit.paths.token, { force: true });
  ctx.emit({
    kind: 'token-removed',
    message: `removed ${rel(kit, kit.paths.token)}: the single-use token is spent`,
    path: kit.paths.token,
  });
}

/** Run `fn`, retrying transient failures with backoff until maxWaitMs. */
async function withRetry<T>(ctx: Ctx, what: string, fn: () => Promise<T>): Promise<T> {
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      const err = toClientError(e);
      if (!transient.has(err)) throw err;
      const ms = ctx.clampDelay(ctx.nextDelay(0));
      if (ms === undefined)
        throw new PollenError(err.code, `${err.message}; gave up after ${seconds(ctx.waited())} (${what})`, {
          cause: err,
        });
      ctx.emit({
        kind: 'retrying',
        message: `${what}: ${err.message}; retrying in ${seconds(ms)}`,
        error: err,
        delayMs: ms,
      });
      await ctx.wait(ms);
    }
  }
}

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

async function enrollNew(ctx: Ctx, existing: Extract<Existing, { ok: false }>): Promise<EnrollResult> {
  const { kit } = ctx;
  const token = readToken(ctx);
  let state = readEnrollmentState(kit);
  if (state && (state.name !== kit.config.name || state.type !== kit.config.type)) state = null;

  let claims: TokenClaims | null = null;
  if (token) {
    claims = decodeToken(token);
    checkTokenForKit(kit, claims);
  }
  const resuming = state?.requestId ? state : null;
  if (!claims && !resuming) {
    const why = existing.reason
      ? `No usable certificate (${existing.reason})`
      : `No certificate in ${rel(kit, kit.startupDir)}/`;
    throw new PollenError('TOKEN_MISSING', `${why} and no enrollment token`, {
      hint: `Set POLLEN_ENROLLMENT_TOKEN, pass --token, or put the token in ${rel(kit, kit.paths.token)}; for a manual setup copy rootCA.pem, ${kit.config.certificates.cert} and ${kit.config.certificates.key} into startup/.`,
    });
  }

  // The pin: from the token, else from the pending request we resume. Every other source must agree.
  const pin = normaliseFingerprint(claims?.pollen.root_ca_fingerprint ?? resuming?.rootCaFingerprint ?? '');
  if (!pin)
    throw new PollenError('TOKEN_INVALID', 'The enrollment token carries no valid root CA fingerprint');
  const others: Array<[string, string | undefined]> = [
    [rel(kit, kit.paths.enrollmentConfig), kit.enrollment?.rootCaFingerprint],
    ['the pending request', state?.rootCaFingerprint],
  ];
  for (const [where, fp] of others)
    if (fp !== undefined && !sameFingerprint(fp, pin)) {
      if (where === 'the pending request') {
        state = null; // a request made under another root: start afresh
        continue;
      }
      throw new PollenError(
        'CA_FINGERPRINT_MISMATCH',
        `The token pins root CA ${pin}, but ${where} names ${fp}`,
      );
    }
  const rootPem = readIf(kit.paths.rootCa);
  if (rootPem !== null) {
    let fp: string;
    try {
      fp = certificateFingerprint(rootPem);
    } catch {
      throw new PollenError('CERT_INVALID', `${rel(kit, kit.paths.rootCa)} is not a PEM certificate`);
    }
    if (!sameFingerprint(fp, pin))
      throw new PollenError(
        'CA_FINGERPRINT_MISMATCH',
        `${rel(kit, kit.paths.rootCa)} is root CA ${fp}, but the token pins ${pin}`,
      );
  }

  const urlText = ctx.opts.certServiceUrl ?? kit.enrollment?.certServiceUrl ?? state?.certServiceUrl;
  if (!urlText)
    throw new PollenError('INVALID_ARGUMENT', 'No Certificate Service URL', {
      hint: 'Set POLLEN_CERT_SERVICE_URL, pass --cert-service, or make the kit with --cert-service.',
    });
  const url = checkCertServiceUrl(urlText);

  // The key: the pending request's, else the kit's existing one, else a new one.
  let key: KeyObject;
  let csr: string;
  const keyPem = readIf(kit.paths.key);
  const stateKey = (() => {
    if (!state || keyPem === null) return null;
    try {
      const k = createPrivateKey(keyPem);
      return publicKeyId(k) === state.keyId ? k : null;
    } catch {
      return null;
    }
  })();
  const now = () => ctx.now().toISOString();
  if (state && stateKey) {
    key = stateKey;
    csr = state.csr;
    ctx.emit({
      kind: 'key-reused',
      message: `resuming with the key ${rel(kit, kit.paths.key)}`,
      path: kit.paths.key,
    });
  } else {
    if (state && !state.requestId) state = null;
    if (state?.requestId) {
      // The key of the pending request is gone: that request can never be collected.
      state = null;
      if (!claims)
        throw new PollenError(
          'TOKEN_MISSING',
          'The key of the pending enrollment request is gone and there is no token to enroll again',
        );
    }
    const made = await loadOrCreateKey(ctx, existing.expired);
    key = made.key;
    csr = made.csr ?? (await csrFor(key, kit.config.name));
    state = {
      version: 1,
      name: kit.config.name,
      type: kit.config.type,
      keyId: publicKeyId(key),
      csr,
      certServiceUrl: url,
      rootCaFingerprint: pin,
      requestId: null,
      pollUrl: null,
      createdAt: now(),
      updatedAt: now(),
    };
    writeState(kit, state);
  }

  const session = await withRetry(ctx, 'connecting to the Certificate Service', () =>
    pinnedSession(ctx, url, pin),
  );
  try {
    let answer: { status: number; json: unknown };
    if (state.requestId) {
      answer = {
        status: 202,
        json: { status: 'pending', requestId: state.requestId, pollUrl: state.pollUrl, retryAfter: 0 },
      };
    } else {
      if (!token) throw new PollenError('TOKEN_MISSING', 'No enrollment token');
      ctx.emit({
        kind: 'submitted',
        message: `sending the certificate request for ${kit.config.type} "${kit.config.name}" to ${session.base.origin}`,
      });
      try {
        answer = await withRetry(ctx, 'enrolling', () =>
          request(ctx, session.agent, endpoint(session.base, 'v1/enroll'), 'POST', { token, csr }),
        );
      } catch (e) {
        clearState(kit); // a refused request is over; the key stays for the next attempt
        throw e;
      }
    }

    let requestId: string | undefined;
    let pollNow = state.requestId !== null; // resuming: ask at once
    while (answer.status === 202) {
      const p = pendingSchema.safeParse(answer.json);
      if (!p.success)
        throw new PollenError('UNAVAILABLE', 'The Certificate Service answered 202 without a request id');
      requestId = p.data.requestId;
      if (state.requestId !== requestId) {
        state = { ...state, requestId, pollUrl: p.data.pollUrl ?? null, updatedAt: now() };
        writeState(kit, state);
      }
      const retryAfterMs = ctx.opts.pollIntervalMs !== undefined ? 0 : (p.data.retryAfter ?? 0) * 1000;
      const ms = ctx.clampDelay(pollNow ? 0 : ctx.nextDelay(retryAfterMs));
      pollNow = false;
      if (ms === undefined)
        throw new PollenError(
          'ENROLLMENT_PENDING',
          `Request ${requestId} is still waiting for approval after ${seconds(ctx.waited())}`,
          {
            hint: `An admin can run: pollen enrollment approve ${kit.config.name}. Run pollen start again to keep waiting (the same request is resumed).`,
            data: { requestId, pollUrl: state.pollUrl },
          },
        );
      ctx.emit({
        kind: 'pending',
        message: `waiting for approval of request ${requestId} (pending ${seconds(ctx.waited())}) — an admin can run: pollen enrollment approve ${kit.config.name}`,
        requestId,
        waitedMs: ctx.waited(),
        nextPollMs: ms,
      });
      if (ms > 0) await ctx.wait(ms);
      const id = requestId;
      try {
        answer = await withRetry(ctx, 'polling', () =>
          request(
            ctx,
            session.agent,
            endpoint(session.base, `v1/requests/${encodeURIComponent(id)}/status`),
            'POST',
            pollProof(id, key, ctx.now()),
          ),
        );
      } catch (e) {
        const err = toClientError(e);
        if (['ENROLLMENT_REJECTED', 'PROOF_INVALID', 'REQUEST_NOT_FOUND'].includes(err.code)) clearState(kit);
        throw err;
      }
    }

    const verified = verifyIssued(kit, answer.json, key, session.root, ctx.now());
    saveCertificate(kit, verified, session.root);
    clearState(kit);
    ctx.emit({
      kind: 'issued',
      message: `Enrollment successful. Certificate saved to: ${kit.paths.cert}`,
      certPath: kit.paths.cert,
    });
    removeSpentToken(ctx, claims);
    return {
      action: 'enrolled',
      kit,
      certificate: certificateInfo(kit, verified.leaf),
      rootCaFingerprint: certificateFingerprint(session.root),
      ...(requestId !== undefined && { requestId }),
      waitedMs: ctx.waited(),
    };
  } finally {
    await session.agent.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Revocation

/** How long `pollen start` waits for the CRL before it starts without it. */
const CRL_TIMEOUT_MS = 10_000;

/** Serials compared as lowercase hex without colons or leading zeros. */
const normSerial = (s: string) =>
  s
    .toLowerCase()
    .replace(/[^0-9a-f]/g, '')
    .replace(/^0+(?=.)/, '');

function revokedHint(kit: LoadedKit): string {
  return `Ask the project admin for a new token, move ${rel(kit, kit.paths.cert)} and ${rel(kit, kit.paths.key)} away, and run pollen start with the new token.`;
}

/**
 * Fetch `GET /v1/crl` over the pinned, identity-checked connection and fail with CERT_REVOKED
 * when it lists our certificate. A service that cannot be reached, or a CRL that cannot be read
 * or is not signed by our chain, gives a `revocation-unchecked` event instead.
 */
async function checkRevocation(
  ctx: Ctx,
  current: Extract<Existing, { ok: true }>,
  url: string,
): Promise<void> {
  const { kit } = ctx;
  const name = rel(kit, kit.paths.cert);
  let crl: x509.X509Crl;
  try {
    const base = baseUrl(checkCertServiceUrl(url));
    const agent = serviceAgent([pem(current.root), ...current.pool.map(pem)]);
    let text: string;
    try {
      text = (
        await requestText(ctx, agent, endpoint(base, 'v1/crl'), 'GET', undefined, {
          accept: 'application/x-pem-file',
          timeoutMs: Math.min(ctx.timeoutMs, CRL_TIMEOUT_MS),
        })
      ).text;
    } finally {
      await agent.close();
    }
    try {
      crl = new x509.X509Crl(text);
    } catch (e) {
      throw new PollenError('CERT_INVALID', 'The Certificate Service answered GET /v1/crl without a CRL', {
        cause: e,
      });
    }
    let signed = false;
    for (const issuer of [...current.pool, current.root])
      if (
        await crl.verify({ publicKey: new x509.X509Certificate(issuer.raw).publicKey }).catch(() => false)
      ) {
        signed = true;
        break;
      }
    if (!signed)
      throw new PollenError(
        'CERT_INVALID',
        'The CRL of the Certificate Service is not signed by the project CA',
      );
  } catch (e) {
    if (ctx.opts.signal?.aborted)
      throw new PollenError('UNAVAILABLE', 'Enrollment was cancelled', { cause: e });
    const err = e instanceof PollenError ? e : toClientError(e, url);
    ctx.emit({
      kind: 'revocation-unchecked',
      message: `could not check ${name} against the revocation list (${err.code}): ${err.message}; starting anyway`,
      error: err,
    });
    return;
  }
  const serial = normSerial(current.info.serial);
  const entry = crl.entries.find((e) => normSerial(e.serialNumber) === serial);
  if (entry)
    throw new PollenError(
      'CERT_REVOKED',
      `The certificate ${name} was revoked on ${entry.revocationDate.toISOString()}; ask the project admin for a new token`,
      { hint: revokedHint(kit), data: { serial, revokedAt: entry.revocationDate.toISOString() } },
    );
}

// ---------------------------------------------------------------------------------------------
// Renewal over mutual TLS

const nextPath = (p: string) => `${p}.next`;

/** A renewal interrupted between its two renames is completed; other leftovers are removed. */
function finishInterruptedRenewal(kit: LoadedKit): void {
  const keyNext = nextPath(kit.paths.key);
  const certNext = nextPath(kit.paths.cert);
  const hasKey = existsSync(keyNext);
  const hasCert = existsSync(certNext);
  if (!hasKey && !hasCert) return;
  try {
    const cert = hasCert ? splitPemCertificates(readFileSync(certNext, 'utf8'))[0] : undefined;
    const key = createPrivateKey(readFileSync(hasKey ? keyNext : kit.paths.key));
    if (cert && sameKey(key, cert.publicKey)) {
      if (hasKey) renameSync(keyNext, kit.paths.key);
      renameSync(certNext, kit.paths.cert);
      return;
    }
  } catch {
    // fall through: remove what cannot be completed
  }
  rmSync(keyNext, { force: true });
  rmSync(certNext, { force: true });
}

async function renewCertificate(
  ctx: Ctx,
  current: Extract<Existing, { ok: true }>,
  url: string,
): Promise<CertificateInfo> {
  const { kit } = ctx;
  ctx.emit({
    kind: 'renewing',
    message: `renewing ${rel(kit, kit.paths.cert)} over mutual TLS at ${new URL(url).origin}`,
  });
  const mtls = {
    cert: [current.leaf, ...current.pool].map(pem).join(''),
    key: current.key.export({ type: 'pkcs8', format: 'pem' }) as string,
  };
  const keys = await generateKeyPair('ec-p256');
  const keyPem = await privateKeyToPem(keys.privateKey);
  const keyNext = nextPath(kit.paths.key);
  const certNext = nextPath(kit.paths.cert);
  writeSecretFile(keyNext, keyPem);
  try {
    const csr = await createCsr(keys, keyTypeInfo('ec-p256'), kit.config.name);
    const base = baseUrl(url);
    const ca = [pem(current.root), ...current.pool.map(pem)];
    const agent = serviceAgent(ca, mtls);
    let answer: { status: number; json: unknown };
    try {
      answer = await request(ctx, agent, endpoint(base, 'v1/renew'), 'POST', { csr });
    } finally {
      await agent.close();
    }
    const newKey = createPrivateKey(keyPem);
    const verified = verifyIssued(kit, answer.json, newKey, current.root, ctx.now());
    writeFileAtomic(kit.paths.chain, [...verified.intermediates, current.root].map(pem).join(''), 0o644);
    writeFileAtomic(certNext, pem(verified.leaf), 0o644);
    renameSync(keyNext, kit.paths.key);
    renameSync(certNext, kit.paths.cert);
    return certificateInfo(kit, verified.leaf);
  } catch (e) {
    rmSync(keyNext, { force: true });
    rmSync(certNext, { force: true });
    throw e;
  }
}
