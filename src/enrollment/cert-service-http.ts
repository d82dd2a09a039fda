/**
 * The one HTTP client of the Certificate Service, under both the admin operations
 * (`cert-service-client.ts`) and a site's enrollment, polling, renewal and revocation check
 * (`enroll-client.ts`): requests with a timeout and the caller's cancellation, JSON decoding with
 * zod, the service's `{error:{code,message,hint,...}}` answers turned back into the same
 * PollenError, and connection failures classified (UNAVAILABLE, TLS_FAILED, CANCELLED).
 *
 * Whom it trusts (`Trust`):
 * - the project root (and verified intermediates): a server certificate that chains to them,
 *   matches the host name AND carries the Certificate Service identity (URI SAN
 *   `pollen://PROJECT/service/cert-service`, see `isCertServiceIdentity`). The project CA also
 *   issues server and relay certificates to participants; without the identity check any of
 *   them, holding a certificate for the service's host name, could pose as the service and
 *   collect a token, a CSR, a poll proof, a renewal or an API key;
 * - the system roots with the ordinary host-name check only, for a service behind a public
 *   (WebPKI) certificate, which cannot carry a project identity;
 * - nothing, only to read the public root (`GET /v1/ca`) before it is pinned: such a client
 *   sends no body and no API key.
 */
import { checkServerIdentity as checkHostName, type PeerCertificate } from 'node:tls';
import { Agent, fetch } from 'undici';
import type { z } from 'zod';
import { type ErrorCode, PollenError } from '../errors.js';
import { CERT_SERVICE_IDENTITY, isCertServiceIdentity } from '../pki/names.js';
import { isErrorCode } from '../transport/errors.js';
import { nodeErrorCode, tlsFailure } from '../transport/tls-failure.js';

/** The `code` of the connection error raised when a server is not the Certificate Service. */
export const NOT_CERT_SERVICE = 'ERR_POLLEN_NOT_CERT_SERVICE';

/**
 * `checkServerIdentity` for every connection to the Certificate Service that trusts the project
 * root: the normal host-name check, then the service identity that no participant certificate
 * carries. Node runs it before anything is written on the connection, so a server that fails it
 * never sees a request.
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

/**
 * A Certificate Service URL: https, no credentials, query or fragment (a path prefix is kept).
 * Returned without a trailing slash.
 */
export function checkCertServiceUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new PollenError('INVALID_ARGUMENT', `Not a URL: "${url}"`, {
      hint: 'Give the Certificate Service as https://HOST:8443.',
    });
  }
  if (u.protocol !== 'https:')
    throw new PollenError(
      'INVALID_ARGUMENT',
      `The Certificate Service URL must be https:// (got ${u.protocol})`,
      { hint: 'Tokens, keys and API keys never travel in clear text; use https://HOST:8443.' },
    );
  if (u.username || u.password || u.search || u.hash)
    throw new PollenError(
      'INVALID_ARGUMENT',
      'The Certificate Service URL must not carry credentials, a query or a fragment',
    );
  return u.toString().replace(/\/$/, '');
}

/** Whom a client trusts (see the top of this file). */
export type Trust =
  | {
      /** PEM of the project root and of intermediates verified under it. */
      project: string | string[];
      /** The client certificate and key, for renewal over mutual TLS. */
      clientCertificate?: { cert: string; key: string };
      /** How messages name what is trusted (default "the project root CA"). */
      label?: string;
    }
  | { system: true }
  | { nothing: true };

export interface CertServiceHttpOptions {
  /** `https://host:8443` (checked with checkCertServiceUrl). */
  url: string;
  trust: Trust;
  /** Sent as a Bearer token on admin calls only. */
  apiKey?: string;
  /** Per-request timeout; default 30 s. */
  timeoutMs?: number;
  /** Cancels every request in flight and to come (CANCELLED). */
  signal?: AbortSignal;
  /** What a TLS_FAILED error tells the user to do. */
  tlsHint?: string;
}

export interface CallOptions {
  body?: unknown;
  /** An admin call: sends the API key (API_KEY_REQUIRED without one). */
  admin?: boolean;
  accept?: string;
  timeoutMs?: number;
}

export class CertServiceHttp {
  readonly base: URL;
  private readonly agent: Agent;
  private readonly trusted: string;

  constructor(private readonly o: CertServiceHttpOptions) {
    this.base = new URL(`${checkCertServiceUrl(o.url)}/`);
    const t = o.trust;
    this.trusted =
      'project' in t ? (t.label ?? 'the project root CA') : 'system' in t ? 'the system roots' : '';
    this.agent = new Agent({
      connect:
        'project' in t
          ? { ca: t.project, checkServerIdentity: checkCertServiceIdentity, ...t.clientCertificate }
          : 'nothing' in t
            ? { rejectUnauthorized: false }
            : {},
      keepAliveTimeout: 5_000,
    });
  }

  get origin(): string {
    return this.base.origin;
  }

  /** Release the connections (so the process can exit). */
  async close(): Promise<void> {
    await this.agent.close();
  }

  /** A call whose answer (200 or 202) is decoded with `schema`; UNEXPECTED_ANSWER if it does not fit. */
  async json<T>(
    method: 'GET' | 'POST',
    path: string,
    schema: z.ZodType<T>,
    opts: CallOptions = {},
  ): Promise<T> {
    const { json } = await this.request(method, path, opts);
    const parsed = schema.safeParse(json);
    if (!parsed.success)
      throw new PollenError(
        'UNEXPECTED_ANSWER',
        `Unexpected answer from the Certificate Service (${method} ${this.pathname(path)})`,
        {
          hint: 'Check that the URL points to a Pollen Certificate Service of the same version.',
          detail: parsed.error.message,
        },
      );
    return parsed.data;
  }

  /** A call whose answer (200 or 202) is returned as parsed JSON, unchecked, with its status. */
  async request(
    method: 'GET' | 'POST',
    path: string,
    opts: CallOptions = {},
  ): Promise<{ status: number; json: unknown }> {
    const { status, text } = await this.text(method, path, opts);
    return { status, json: parseJson(text) };
  }

  /** A call whose answer (200 or 202) is returned as text; any other answer is a PollenError. */
  async text(
    method: 'GET' | 'POST',
    path: string,
    opts: CallOptions = {},
  ): Promise<{ status: number; text: string }> {
    const url = new URL(path.replace(/^\//, ''), this.base);
    const headers: Record<string, string> = { accept: opts.accept ?? 'application/json' };
    if ('nothing' in this.o.trust && (opts.admin || opts.body !== undefined))
      throw new PollenError(
        'INTERNAL',
        'Refusing to send a request body or an API key to an unverified server',
      );
    if (opts.admin) {
      if (!this.o.apiKey) throw new PollenError('API_KEY_REQUIRED', 'An API key is required for this call');
      headers['authorization'] = `Bearer ${this.o.apiKey}`;
    }
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    const timeout = AbortSignal.timeout(opts.timeoutMs ?? this.o.timeoutMs ?? 30_000);
    let status: number;
    let text: string;
    try {
      const res = await fetch(url, {
        method,
        headers,
        ...(opts.body !== undefined && { body: JSON.stringify(opts.body) }),
        dispatcher: this.agent,
        signal: this.o.signal ? AbortSignal.any([timeout, this.o.signal]) : timeout,
      });
      status = res.status;
      text = await res.text();
    } catch (e) {
      throw this.connectionError(e);
    }
    if (status !== 200 && status !== 202)
      throw responseError(status, parseJson(text), `${method} ${url.pathname}`, opts.admin === true);
    return { status, text };
  }

  /** What a failure to connect, to finish TLS or to get an answer means to the user. */
  connectionError(e: unknown): PollenError {
    return connectionFailure(e, {
      origin: this.base.origin,
      trusted: this.trusted,
      ...(this.o.signal && { signal: this.o.signal }),
      ...(this.o.tlsHint !== undefined && { tlsHint: this.o.tlsHint }),
    });
  }

  private pathname(path: string): string {
    return new URL(path.replace(/^\//, ''), this.base).pathname;
  }
}

/**
 * Classify a failure to connect, to finish TLS or to get an answer: CANCELLED (the caller's
 * signal), UNAVAILABLE (no answer in time, cannot connect: retried by the enrollment client),
 * TLS_FAILED (the server's certificate, or not the Certificate Service) and the other TLS
 * failures as transport/tls-failure.ts reads them. A PollenError passes.
 */
export function connectionFailure(
  e: unknown,
  o: { origin?: string; trusted?: string; signal?: AbortSignal; tlsHint?: string } = {},
): PollenError {
  if (e instanceof PollenError) return e;
  const service = o.origin ? `the Certificate Service at ${o.origin}` : 'the Certificate Service';
  const Service = service[0]!.toUpperCase() + service.slice(1);
  if (o.signal?.aborted || (e as { name?: unknown })?.name === 'AbortError')
    return new PollenError('CANCELLED', `The request to ${service} was cancelled`, { cause: e });
  if ((e as { name?: unknown })?.name === 'TimeoutError')
    return new PollenError('UNAVAILABLE', `${Service} did not answer in time`, { cause: e });
  const code = nodeErrorCode(e);
  if (code === NOT_CERT_SERVICE)
    return notCertServiceError(o.origin ?? 'this address', e, '; nothing was sent');
  const tls = tlsFailure(e, {
    peer: service,
    ...(o.trusted !== undefined && { trusted: o.trusted }),
    hint:
      o.tlsHint ??
      'Check the Certificate Service URL; the service must present a certificate from the project CA.',
    protocolHint: 'Check the Certificate Service URL: https://HOST:8443 of a Pollen Certificate Service.',
  });
  if (tls) return tls;
  return new PollenError('UNAVAILABLE', `Cannot reach ${service}${code ? ` (${code})` : ''}`, { cause: e });
}

function parseJson(text: string): unknown {
  try {
    return text === '' ? undefined : JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * The PollenError for an answer other than 200/202. The service's own error comes back as it was
 * sent (code, message, hint, public data); a code this version does not know, or an answer
 * without an error body (a proxy, another server), gets the code its status calls for: RATE_LIMITED
 * for 429, UNAVAILABLE for 5xx (both retried by the enrollment client), ROUTE_NOT_FOUND for 404.
 */
export function responseError(status: number, body: unknown, what: string, sentApiKey: boolean): PollenError {
  const err = (body as { error?: Record<string, unknown> } | undefined)?.error;
  const byStatus: ErrorCode =
    status === 429 ? 'RATE_LIMITED' : status >= 500 ? 'UNAVAILABLE' : 'INVALID_REQUEST';
  if (err && typeof err['code'] === 'string' && typeof err['message'] === 'string') {
    const code = isErrorCode(err['code']) ? err['code'] : byStatus;
    const { code: _c, message: _m, hint, ...rest } = err;
    return new PollenError(code, err['message'], {
      ...(typeof hint === 'string' && { hint }),
      ...(Object.keys(rest).length > 0 && { data: rest }),
      detail: `${what} → HTTP ${status} ${err['code']}`,
    });
  }
  if (status === 401 && sentApiKey)
    return new PollenError('API_KEY_INVALID', 'The Certificate Service refused the API key');
  if (status === 403) return new PollenError('FORBIDDEN', 'The Certificate Service refused the call');
  if (status === 404)
    return new PollenError(
      'ROUTE_NOT_FOUND',
      `No such endpoint: ${what} (is this a Pollen Certificate Service?)`,
      {
        hint: 'Check the Certificate Service URL: https://HOST:8443 of a Pollen Certificate Service.',
      },
    );
  return new PollenError(byStatus, `The Certificate Service answered HTTP ${status} to ${what}`);
}
