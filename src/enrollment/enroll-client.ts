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
 * The parts live in enroll/: the run's context and retry (context.ts), the pin (pin.ts), the key
 * (key.ts), certificates kept and received (certificate.ts), the pending state (state.ts),
 * revocation (revocation.ts) and renewal (renewal.ts); every request goes through the one client
 * of the Certificate Service (cert-service-http.ts).
 */
import { type KeyObject, sign } from 'node:crypto';
import { rmSync } from 'node:fs';
import { z } from 'zod';
import { type ErrorCode, PollenError } from '../errors.js';
import { certificateFingerprint, normaliseFingerprint, sameFingerprint } from '../pki/fingerprint.js';
import { describeKey } from '../pki/keys.js';
import { checkCertServiceUrl } from './cert-service-http.js';
import {
  certificateInfo,
  checkExistingCertificate,
  type Existing,
  saveCertificate,
  verifyIssued,
} from './enroll/certificate.js';
import { Ctx, readIf, rel, seconds } from './enroll/context.js';
import { requestKey } from './enroll/key.js';
import { pinnedSession, type Session } from './enroll/pin.js';
import { finishInterruptedRenewal, renewCertificate } from './enroll/renewal.js';
import { checkRevocation, revokedHint } from './enroll/revocation.js';
import { clearState, type EnrollmentState, readEnrollmentState, writeState } from './enroll/state.js';
import { type LoadedKit, loadKit, tokenSubjectType } from './kit.js';
import { decodeToken, type TokenClaims } from './token.js';

export { checkExistingCertificate, publicKeyId } from './enroll/certificate.js';
export { type EnrollmentState, readEnrollmentState } from './enroll/state.js';

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
  /**
   * Before each poll of a waiting request; the first one's message says what the request is and
   * what an admin runs to approve it, the later ones how long it has waited.
   */
  | {
      kind: 'pending';
      message: string;
      requestId: string;
      approveCommand: string;
      waitedMs: number;
      nextPollMs: number;
    }
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
  /** The DNS names and IP addresses it names (servers and relays: what clients may dial). */
  hosts: string[];
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
      const err = ctx.error(e);
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
  // A server or relay kit made with --host is reached at those names: its certificate must name them.
  const missing = (kit.config.hosts ?? []).filter((h) => !(claims.pollen.hosts ?? []).includes(h));
  if (missing.length > 0)
    throw new PollenError(
      'TOKEN_SUBJECT_MISMATCH',
      `The enrollment token does not name ${missing.join(', ')}, where this ${expected} is reached (the kit's hosts); nothing was sent`,
      {
        hint: `Use a token made with every host of the kit: pollen token generate -s ${kit.config.name} --${expected} ${(kit.config.hosts ?? []).map((h) => `--host ${h}`).join(' ')}`,
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

/**
 * The root CA fingerprint to pin: the token's, else the one of the pending request we resume.
 * Every other source must agree (enrollment.json, rootCA.pem); a pending request made under
 * another root is dropped (`state` comes back null).
 */
function pinFor(
  kit: LoadedKit,
  claims: TokenClaims | null,
  state: EnrollmentState | null,
): { pin: string; state: EnrollmentState | null } {
  const resuming = state?.requestId ? state : null;
  const pin = normaliseFingerprint(claims?.pollen.root_ca_fingerprint ?? resuming?.rootCaFingerprint ?? '');
  if (!pin)
    throw new PollenError('TOKEN_INVALID', 'The enrollment token carries no valid root CA fingerprint');
  const configured = kit.enrollment?.rootCaFingerprint;
  if (configured !== undefined && !sameFingerprint(configured, pin))
    throw new PollenError(
      'CA_FINGERPRINT_MISMATCH',
      `The token pins root CA ${pin}, but ${rel(kit, kit.paths.enrollmentConfig)} names ${configured}`,
    );
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
  const sameRoot = state === null || sameFingerprint(state.rootCaFingerprint, pin);
  return { pin, state: sameRoot ? state : null };
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
  if (!claims && !state?.requestId) {
    const why = existing.reason
      ? `No usable certificate (${existing.reason})`
      : `No certificate in ${rel(kit, kit.startupDir)}/`;
    throw new PollenError('TOKEN_MISSING', `${why} and no enrollment token`, {
      hint: `Set POLLEN_ENROLLMENT_TOKEN, pass --token, or put the token in ${rel(kit, kit.paths.token)}; for a manual setup copy rootCA.pem, ${kit.config.certificates.cert} and ${kit.config.certificates.key} into startup/.`,
    });
  }
  const pinned = pinFor(kit, claims, state);
  const { pin } = pinned;
  state = pinned.state;

  const urlText = ctx.opts.certServiceUrl ?? kit.enrollment?.certServiceUrl ?? state?.certServiceUrl;
  if (!urlText)
    throw new PollenError('INVALID_ARGUMENT', 'No Certificate Service URL', {
      hint: 'Set POLLEN_CERT_SERVICE_URL, pass --cert-service, or make the kit with --cert-service.',
    });
  const url = checkCertServiceUrl(urlText);
  const request = await requestKey(ctx, state, {
    haveToken: claims !== null,
    url,
    pin,
    rotate: existing.expired,
  });
  const { key } = request;
  state = request.state;

  const session = await ctx.retry('connecting to the Certificate Service', () =>
    pinnedSession(ctx, url, pin),
  );
  try {
    const first = state.requestId
      ? { status: 202, json: { status: 'pending', requestId: state.requestId, pollUrl: state.pollUrl } }
      : await submit(ctx, session, token, state);
    const { answer, requestId } = await awaitApproval(ctx, session, key, state, first);
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
    await session.http.close();
  }
}

type Answer = { status: number; json: unknown };

/** POST /v1/enroll with the token and the CSR (retried while the service is unavailable). */
async function submit(
  ctx: Ctx,
  session: Session,
  token: string | null,
  state: EnrollmentState,
): Promise<Answer> {
  const { kit } = ctx;
  if (!token) throw new PollenError('TOKEN_MISSING', 'No enrollment token');
  ctx.emit({
    kind: 'submitted',
    message: `sending the certificate request for ${kit.config.type} "${kit.config.name}" to ${session.http.origin}`,
  });
  try {
    return await ctx.retry('enrolling', () =>
      session.http.request('POST', 'v1/enroll', { body: { token, csr: state.csr } }),
    );
  } catch (e) {
    clearState(kit); // a refused request is over; the key stays for the next attempt
    throw e;
  }
}

const pendingSchema = z.object({
  status: z.literal('pending'),
  requestId: z.string().min(1).max(128),
  pollUrl: z.string().optional(),
  retryAfter: z.number().min(0).optional(),
});

/** A waiting site says first what it waits for and what an admin runs, then how long it has waited. */
function pendingMessage(
  ctx: Ctx,
  o: { requestId: string; approveCommand: string; first: boolean; resuming: boolean; nextPollMs: number },
): string {
  const { kit } = ctx;
  const max = ctx.opts.maxWaitMs;
  const limit = max === undefined ? 'until it is decided' : `up to ${seconds(max)}`;
  if (!o.first)
    return `request ${o.requestId} still waits for approval (${seconds(ctx.waited())} so far, waiting ${limit}); next check in ${seconds(o.nextPollMs)}`;
  return [
    `${o.resuming ? 'still waiting' : 'waiting'} for an admin to approve request ${o.requestId} of ${kit.config.type} "${kit.config.name}"`,
    `  an admin approves it with: ${o.approveCommand}`,
    `  waiting ${limit}; stopping keeps the request, and the next start resumes it`,
  ].join('\n');
}

/**
 * While the answer is 202 (pending): record the request, wait (the service's retryAfter, or the
 * backoff; at most until maxWaitMs: ENROLLMENT_PENDING) and poll with a proof of possession.
 */
async function awaitApproval(
  ctx: Ctx,
  session: Session,
  key: KeyObject,
  state: EnrollmentState,
  first: Answer,
): Promise<{ answer: Answer; requestId: string | undefined }> {
  const { kit } = ctx;
  let answer = first;
  let requestId: string | undefined;
  const resuming = state.requestId !== null; // ask at once
  let pollNow = resuming;
  let polls = 0;
  while (answer.status === 202) {
    const p = pendingSchema.safeParse(answer.json);
    if (!p.success)
      throw new PollenError('UNEXPECTED_ANSWER', 'The Certificate Service answered 202 without a request id');
    requestId = p.data.requestId;
    if (state.requestId !== requestId) {
      state = { ...state, requestId, pollUrl: p.data.pollUrl ?? null, updatedAt: ctx.now().toISOString() };
      writeState(kit, state);
    }
    const approveCommand = `pollen enrollment approve ${requestId} --cert-service ${session.http.origin}`;
    const retryAfterMs = ctx.opts.pollIntervalMs !== undefined ? 0 : (p.data.retryAfter ?? 0) * 1000;
    const ms = ctx.clampDelay(pollNow ? 0 : ctx.nextDelay(retryAfterMs));
    pollNow = false;
    if (ms === undefined)
      throw new PollenError(
        'ENROLLMENT_PENDING',
        `Request ${requestId} of ${kit.config.type} "${kit.config.name}" is still waiting for approval after ${seconds(ctx.waited())}`,
        {
          hint: `An admin approves it with: ${approveCommand}. Start again to keep waiting: the same request is resumed (--max-wait or POLLEN_MAX_WAIT sets how long a start waits).`,
          data: { requestId, pollUrl: state.pollUrl, approveCommand },
        },
      );
    ctx.emit({
      kind: 'pending',
      message: pendingMessage(ctx, {
        requestId,
        approveCommand,
        first: polls++ === 0,
        resuming,
        nextPollMs: ms,
      }),
      requestId,
      approveCommand,
      waitedMs: ctx.waited(),
      nextPollMs: ms,
    });
    if (ms > 0) await ctx.wait(ms);
    const id = requestId;
    try {
      answer = await ctx.retry('polling', () =>
        session.http.request('POST', `v1/requests/${encodeURIComponent(id)}/status`, {
          body: pollProof(id, key, ctx.now()),
        }),
      );
    } catch (e) {
      const err = ctx.error(e);
      if (['ENROLLMENT_REJECTED', 'PROOF_INVALID', 'REQUEST_NOT_FOUND'].includes(err.code)) clearState(kit);
      throw err;
    }
  }
  return { answer, requestId };
}
