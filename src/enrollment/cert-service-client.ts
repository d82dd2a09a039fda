/**
 * A small typed HTTPS client for the Certificate Service admin API (docs/api.md). It sends the API
 * key as a Bearer token and turns `{error:{code,message,hint}}` answers back into the same
 * PollenError. Connection failures become UNAVAILABLE, certificate failures TLS_FAILED.
 *
 * Whom it trusts:
 * - with `caCert` (the project root): a server certificate that chains to it, matches the host
 *   name AND carries the Certificate Service identity (URI SAN `pollen://PROJECT/service/cert-service`,
 *   see `isCertServiceIdentity`). The project CA also issues server and relay certificates to
 *   participants; without the identity check any of them, holding a certificate for the service's
 *   host name, could pose as the service and collect the API key.
 * - without `caCert`: the system roots and the ordinary host-name check only, for a service behind
 *   a public (WebPKI) certificate, which cannot carry a project identity.
 */
import { checkServerIdentity as checkHostName, type PeerCertificate } from 'node:tls';
import { Agent, fetch } from 'undici';
import { z } from 'zod';
import { ERROR_CODES, type ErrorCode, PollenError } from '../errors.js';
import { CERT_SERVICE_IDENTITY, isCertServiceIdentity } from '../pki/profiles.js';
import type { SubjectType } from './policy.js';

/** The `code` of the connection error raised when a server is not the Certificate Service. */
export const NOT_CERT_SERVICE = 'ERR_POLLEN_NOT_CERT_SERVICE';

/**
 * `checkServerIdentity` for every connection to the Certificate Service that trusts the project
 * root: the normal host-name check, then the service identity that no participant certificate
 * carries. Node runs it before anything is written on the connection, so a server that fails it
 * never sees a request (token, CSR, poll proof, renewal, API key).
 */
export function checkCertServiceIdentity(host: string, cert: PeerCertificate): Error | undefined {
  const hostError = checkHostName(host, cert);
  if (hostError) return hostError;
  if (isCertServiceIdentity(cert.subjectaltname)) return undefined;
  return Object.assign(
    new Error(
      `the certificate of ${host} lacks the Certificate Service identity (URI pollen://PROJECT${CERT_SERVICE_IDENTITY})`,
    ),
    { code: NOT_CERT_SERVICE },
  );
}

/** The TLS_FAILED error for a server that is not the Certificate Service. */
export function notCertServiceError(origin: string, cause?: unknown, suffix = ''): PollenError {
  return new PollenError(
    'TLS_FAILED',
    `The server at ${origin} is not the project's Certificate Service (its certificate lacks the service identity)${suffix}`,
    {
      ...(cause !== undefined && { cause }),
      hint: `Check the Certificate Service URL. The project CA also issues server and relay certificates, so a certificate from the project root is not enough: the service's own carries the URI pollen://PROJECT${CERT_SERVICE_IDENTITY} (the Certificate Service issues its own certificate with it).`,
    },
  );
}

export interface CertServiceClientOptions {
  /** `https://host:8443` (a path prefix is kept). */
  url: string;
  /** Needed for the admin calls; the public ones (health, ca) work without it. */
  apiKey?: string;
  /** PEM of the root CA(s) to trust; undefined = the system roots. */
  caCert?: string;
  /** Per-request timeout; default 30 s. */
  timeoutMs?: number;
}

export interface IssuedTokenInfo {
  subject: string;
  token: string;
  tokenId: string;
  expiresAt: string;
}

export interface EnrollmentRequestInfo {
  id: string;
  name: string;
  type: CertTypeName;
  role: string | null;
  org: string | null;
  sourceIp: string | null;
  status: string;
  rule: string | null;
  createdAt: string;
}

export interface EnrolledInfo {
  name: string;
  type: CertTypeName;
  role: string | null;
  serial: string;
  fingerprint: string;
  notAfter: string;
  issuedAt: string;
  approvedBy: string | null;
  revoked: boolean;
}

// Requests and certificates carry the certificate type (users enroll as `admin`).
const certType = z.enum(['client', 'server', 'relay', 'admin']);
export type CertTypeName = z.infer<typeof certType>;
const nullableString = z
  .string()
  .nullish()
  .transform((v) => v ?? null);

const tokensResponse = z.object({
  tokens: z.array(
    z.object({ subject: z.string(), token: z.string(), tokenId: z.string(), expiresAt: z.string() }),
  ),
});
const requestsResponse = z.object({
  requests: z.array(
    z.object({
      id: z.string(),
      name: z.string(),
      type: certType,
      role: nullableString,
      org: nullableString,
      sourceIp: nullableString,
      status: z.string(),
      rule: nullableString,
      createdAt: z.string(),
    }),
  ),
});
const decided = z.array(z.object({ id: z.string(), name: z.string(), type: certType }));
/** Requests another admin decided first (they keep that decision). */
const alreadyDecided = z
  .array(
    z.object({
      requestId: z.string(),
      name: z.string(),
      decision: z.enum(['approved', 'rejected']),
      decidedBy: nullableString,
      decidedAt: nullableString,
    }),
  )
  .optional()
  .transform((v) => v ?? []);
const approvedResponse = z.object({ approved: decided, alreadyDecided });
const rejectedResponse = z.object({ rejected: decided, alreadyDecided });
export type DecisionResult = { alreadyDecided: z.infer<typeof alreadyDecided> };
const enrolledResponse = z.object({
  enrolled: z.array(
    z.object({
      name: z.string(),
      type: certType,
      role: nullableString,
      serial: z.string(),
      fingerprint: z.string(),
      notAfter: z.string(),
      issuedAt: z.string(),
      approvedBy: nullableString,
      revoked: z.boolean(),
    }),
  ),
});
const revokedResponse = z.object({ revoked: z.array(z.object({ name: z.string(), serial: z.string() })) });
const auditResponse = z.object({
  entries: z.array(
    z.object({
      seq: z.number(),
      at: z.string(),
      actor: z.string(),
      action: z.string(),
      subject: z.string(),
      detail: z.record(z.string(), z.unknown()),
      prevHash: z.string(),
      hash: z.string(),
    }),
  ),
});
const healthResponse = z.object({ status: z.string(), version: z.string(), backend: z.string() }).loose();
const caResponse = z.object({
  root: z.string(),
  intermediate: z.string(),
  chain: z.string(),
  rootFingerprint: z.string(),
});

const TLS_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'EPROTO',
]);

/** The request bodies the service accepts are at most 64 KiB; token batches are split below that. */
const MAX_BODY_BYTES = 48 * 1024;

export class CertServiceClient {
  private readonly base: URL;
  private readonly agent: Agent;
  private readonly apiKey: string | undefined;
  private readonly timeoutMs: number;

  constructor(opts: CertServiceClientOptions) {
    let base: URL;
    try {
      base = new URL(opts.url);
    } catch {
      throw new PollenError('INVALID_ARGUMENT', `Not a URL: "${opts.url}"`, {
        hint: 'Give the Certificate Service as https://HOST:8443.',
      });
    }
    if (base.protocol !== 'https:')
      throw new PollenError(
        'INVALID_ARGUMENT',
        `The Certificate Service URL must be https:// (got ${base.protocol})`,
        {
          hint: 'The API key and tokens never travel in clear text; use https://HOST:8443.',
        },
      );
    if (!base.pathname.endsWith('/')) base.pathname += '/';
    this.base = base;
    this.apiKey = opts.apiKey;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.agent = new Agent({
      connect:
        opts.caCert === undefined ? {} : { ca: opts.caCert, checkServerIdentity: checkCertServiceIdentity },
      keepAliveTimeout: 5_000,
    });
  }

  /** Release the connections (call when done, so the process can exit). */
  async close(): Promise<void> {
    await this.agent.close();
  }

  private async call<T>(
    method: 'GET' | 'POST',
    path: string,
    schema: z.ZodType<T>,
    opts: { body?: unknown; auth?: boolean } = {},
  ): Promise<T> {
    const url = new URL(path.replace(/^\//, ''), this.base);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (opts.auth !== false) {
      if (!this.apiKey) throw new PollenError('API_KEY_REQUIRED', 'An API key is required for this call');
      headers['authorization'] = `Bearer ${this.apiKey}`;
    }
    let body: string | undefined;
    if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] = 'application/json';
    }
    let res: Awaited<ReturnType<typeof fetch>>;
    try {
      res = await fetch(url, {
        method,
        headers,
        ...(body !== undefined && { body }),
        dispatcher: this.agent,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (e) {
      throw connectionError(e, this.base.origin);
    }
    let text: string;
    try {
      text = await res.text();
    } catch (e) {
      throw connectionError(e, this.base.origin);
    }
    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (!res.ok) throw errorFromResponse(res.status, json, `${method} ${url.pathname}`);
    const parsed = schema.safeParse(json);
    if (!parsed.success)
      throw new PollenError(
        'UNAVAILABLE',
        `Unexpected answer from the Certificate Service (${method} ${url.pathname})`,
        {
          hint: 'Check that the URL points to a Pollen Certificate Service of the same version.',
          detail: parsed.error.message,
        },
      );
    return parsed.data;
  }

  health() {
    return this.call('GET', '/v1/health', healthResponse, { auth: false });
  }

  ca() {
    return this.call('GET', '/v1/ca', caResponse, { auth: false });
  }

  /** `POST /v1/tokens`: one request (keep it under 64 KiB; see `createTokensInChunks`). */
  async createTokens(req: {
    subjects: string[];
    type: SubjectType;
    role?: string;
  }): Promise<IssuedTokenInfo[]> {
    const body = {
      subjects: req.subjects,
      type: req.type,
      ...(req.role !== undefined && { role: req.role }),
    };
    return (await this.call('POST', '/v1/tokens', tokensResponse, { body })).tokens;
  }

  /** Issue tokens for any number of subjects, in requests that stay under the body limit. */
  async createTokensInChunks(
    req: { subjects: readonly string[]; type: SubjectType; role?: string },
    onProgress?: (done: number, total: number) => void,
  ): Promise<IssuedTokenInfo[]> {
    const out: IssuedTokenInfo[] = [];
    let chunk: string[] = [];
    let size = 128;
    const flush = async () => {
      if (chunk.length === 0) return;
      out.push(
        ...(await this.createTokens({
          subjects: chunk,
          type: req.type,
          ...(req.role !== undefined && { role: req.role }),
        })),
      );
      onProgress?.(out.length, req.subjects.length);
      chunk = [];
      size = 128;
    };
    for (const s of req.subjects) {
      const bytes = Buffer.byteLength(JSON.stringify(s)) + 1;
      if (size + bytes > MAX_BODY_BYTES || chunk.length >= 1000) await flush();
      chunk.push(s);
      size += bytes;
    }
    await flush();
    return out;
  }

  async listRequests(status?: string): Promise<EnrollmentRequestInfo[]> {
    const q = status ? `?status=${encodeURIComponent(status)}` : '';
    return (await this.call('GET', `/v1/requests${q}`, requestsResponse)).requests;
  }

  async approve(req: { names?: string[]; pattern?: string; type?: SubjectType | CertTypeName }) {
    return this.call('POST', '/v1/requests/approve', approvedResponse, { body: req });
  }

  async reject(req: {
    names?: string[];
    pattern?: string;
    type?: SubjectType | CertTypeName;
    reason: string;
  }) {
    return this.call('POST', '/v1/requests/reject', rejectedResponse, { body: req });
  }

  async enrolled(type?: SubjectType | CertTypeName): Promise<EnrolledInfo[]> {
    const q = type ? `?type=${encodeURIComponent(type)}` : '';
    return (await this.call('GET', `/v1/enrolled${q}`, enrolledResponse)).enrolled;
  }

  /** Audit entries after sequence number `after`, oldest first (at most `limit`). */
  async audit(after = 0, limit = 1000) {
    return (await this.call('GET', `/v1/audit?after=${after}&limit=${limit}`, auditResponse)).entries;
  }

  async revoke(req: { names?: string[]; serials?: string[]; reason?: string }) {
    return (await this.call('POST', '/v1/revoke', revokedResponse, { body: req })).revoked;
  }
}

function errorCode(e: unknown): string | undefined {
  // undici wraps the socket error: TypeError('fetch failed', { cause }), sometimes nested.
  let cur: unknown = e;
  for (let i = 0; i < 4 && cur; i++) {
    const code = (cur as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

function connectionError(e: unknown, origin: string): PollenError {
  const name = (e as { name?: unknown })?.name;
  if (name === 'TimeoutError' || name === 'AbortError')
    return new PollenError('UNAVAILABLE', `The Certificate Service at ${origin} did not answer in time`, {
      cause: e,
    });
  const code = errorCode(e);
  if (code === NOT_CERT_SERVICE) return notCertServiceError(origin, e, '; nothing was sent');
  if (code && (TLS_CODES.has(code) || code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL')))
    return new PollenError('TLS_FAILED', `TLS to ${origin} failed (${code})`, {
      cause: e,
      hint: 'Trust the project root CA with --ca-cert FILE (or POLLEN_CA_CERT), and check the URL host name.',
    });
  return new PollenError(
    'UNAVAILABLE',
    `Cannot reach the Certificate Service at ${origin}${code ? ` (${code})` : ''}`,
    {
      cause: e,
    },
  );
}

function errorFromResponse(status: number, body: unknown, what: string): PollenError {
  const err = (body as { error?: { code?: unknown; message?: unknown; hint?: unknown } } | undefined)?.error;
  if (err && typeof err.code === 'string' && typeof err.message === 'string') {
    const code: ErrorCode = Object.hasOwn(ERROR_CODES, err.code)
      ? (err.code as ErrorCode)
      : status >= 500
        ? 'UNAVAILABLE'
        : 'INVALID_REQUEST';
    const { code: _c, message: _m, hint: _h, ...rest } = err as Record<string, unknown>;
    return new PollenError(code, err.message, {
      ...(typeof err.hint === 'string' && { hint: err.hint }),
      ...(Object.keys(rest).length > 0 && { data: rest }),
      detail: `${what} → HTTP ${status} ${err.code}`,
    });
  }
  if (status === 401)
    return new PollenError('API_KEY_INVALID', 'The Certificate Service refused the API key');
  if (status === 403) return new PollenError('FORBIDDEN', 'The Certificate Service refused the call');
  if (status === 404)
    return new PollenError(
      'UNAVAILABLE',
      `No such endpoint: ${what} (is this a Pollen Certificate Service?)`,
    );
  return new PollenError(
    status >= 500 ? 'UNAVAILABLE' : 'INVALID_REQUEST',
    `The Certificate Service answered HTTP ${status} to ${what}`,
  );
}
