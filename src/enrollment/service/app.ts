import type { ServerOptions as HttpsServerOptions } from 'node:https';
import type { DetailedPeerCertificate, TLSSocket } from 'node:tls';
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
  LogController,
} from 'fastify';
import type { Logger } from 'pino';
import { type AuditActor, type AuditEntry, entryOrg, unidentified } from '../../audit/entry.js';
import { PollenError, publicError } from '../../errors.js';
import type { Identity } from '../../identity/identity.js';
import type { Right, Scope } from '../../identity/rights.js';
import { authorizationHeaders } from '../../transport/authorization-headers.js';
import { VERSION } from '../../version.js';
import type { AdminCaller } from './admin-auth.js';
import {
  approveBody,
  auditQuery,
  checkpointsQuery,
  enrollBody,
  enrolledQuery,
  noQuery,
  pollBody,
  rejectBody,
  renewBody,
  requestsQuery,
  revokeBody,
  serviceAccountBody,
  serviceAccountRevokeBody,
  tokensBody,
} from './api-schemas.js';
import type { IssuedResponse, PendingResponse } from './issuer.js';
import type { CertificateService } from './service.js';

/** Bodies larger than this are refused before parsing. */
export const MAX_BODY_BYTES = 64 * 1024;

/** The client certificate chain of a TLS request, leaf first, PEM. */
function peerChain(req: FastifyRequest): string[] {
  const socket = req.raw.socket as TLSSocket;
  const chain: string[] = [];
  let c: DetailedPeerCertificate | undefined = socket.getPeerCertificate?.(true);
  while (c?.raw && chain.length < 5) {
    chain.push(`-----BEGIN CERTIFICATE-----\n${c.raw.toString('base64')}\n-----END CERTIFICATE-----\n`);
    c = c.issuerCertificate === c ? undefined : c.issuerCertificate;
  }
  return chain;
}

/** Fastify's refusal of a request body (too large, not JSON) as the matching PollenError. */
function bodyRefusal(err: unknown): PollenError | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !code.startsWith('FST_ERR')) return undefined;
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE')
    return new PollenError('PAYLOAD_TOO_LARGE', `The request body is larger than ${MAX_BODY_BYTES} bytes`);
  if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
    return new PollenError(
      'INVALID_REQUEST',
      'The request body must be JSON (Content-Type: application/json)',
    );
  if (((err as { statusCode?: number }).statusCode ?? 500) < 500)
    return new PollenError('INVALID_REQUEST', 'The request body is not valid JSON');
  return undefined;
}

/** The error code each failed request was answered with (the metrics read it: answeredCode). */
const answered = new WeakMap<FastifyReply, string>();

/** The error code `reply` carried, if it was an error answer. */
export const answeredCode = (reply: FastifyReply): string | undefined => answered.get(reply);

/** An enroll or poll answer: 202 with Retry-After and the URL to poll for a pending request. */
function answer(
  r: IssuedResponse | PendingResponse,
  reply: FastifyReply,
): IssuedResponse | (PendingResponse & { pollUrl: string }) {
  if (r.status === 'issued') return r;
  void reply.status(202).header('retry-after', String(r.retryAfter));
  const pollUrl = `/v1/requests/${encodeURIComponent(r.requestId)}/status`;
  return { status: r.status, requestId: r.requestId, pollUrl, retryAfter: r.retryAfter };
}

/**
 * The HTTP face of the Certificate Service: JSON in (checked by the schemas of api-schemas.ts),
 * JSON out, one error shape. Built without listening so tests can call it in-process with
 * `app.inject()`.
 */
export function buildApp(
  service: CertificateService,
  options: {
    logger?: Logger | false;
    https?: HttpsServerOptions;
    /** Addresses or CIDRs of the reverse proxies whose X-Forwarded-For is believed. */
    trustProxy?: string;
  } = {},
): FastifyInstance {
  const app = Fastify({
    ...(options.https ? { https: options.https } : {}),
    loggerInstance: options.logger || undefined,
    logController: new LogController({ disableRequestLogging: true }),
    // Errors raised before routing (a malformed URL, say) get the same error shape as the rest.
    frameworkErrors: (
      err: Error,
      _req: unknown,
      reply: { status(n: number): { send(b: unknown): void } },
    ) => {
      const e = new PollenError('INVALID_REQUEST', 'The request is malformed', { detail: err.message });
      reply.status(400).send({ error: e.toJSON() });
    },
    bodyLimit: MAX_BODY_BYTES,
    // Only the named proxies' X-Forwarded-For is believed: the client address drives source_ips rules.
    trustProxy: options.trustProxy || false,
    return503OnClosing: true,
    connectionTimeout: 30_000,
    requestTimeout: 30_000,
  } as FastifyServerOptions) as unknown as FastifyInstance;

  app.setErrorHandler((err, req, reply) => {
    let reported = false;
    const e =
      bodyRefusal(err) ??
      publicError(err, (reference, error) => {
        reported = true;
        req.log.error({ err: error, reference, method: req.method, url: req.url }, 'internal error');
      });
    if (!reported) req.log.info({ code: e.code, url: req.url, ip: req.ip, detail: e.detail }, e.message);
    answered.set(reply, e.code);
    void reply.status(e.status).send({ error: e.toJSON() });
  });
  app.setNotFoundHandler((req, reply) => {
    const e = new PollenError('ROUTE_NOT_FOUND', `No such API: ${req.method} ${req.url.split('?')[0]}`);
    void reply.status(404).send({ error: e.toJSON() });
  });

  app.get('/v1/health', async () => ({ status: 'ok', version: VERSION, backend: service.backend }));
  app.get('/v1/ca', async () => service.caInfo());
  app.get('/v1/crl', async (req, reply) => {
    const pem = await service.certificates.crl();
    // DER holds one CRL: the current intermediate's (PEM has one per intermediate in the chain).
    if ((req.query as { format?: unknown }).format === 'der') {
      const first = pem.slice(0, pem.indexOf('-----END X509 CRL-----'));
      const der = Buffer.from(first.replace(/-----[^-]+-----|\s+/g, ''), 'base64');
      return reply.type('application/pkix-crl').send(der);
    }
    return reply.type('application/x-pem-file').send(pem);
  });

  // Enrollment: the token is verified before anything else of the request is read.
  app.post('/v1/enroll', async (req, reply) => {
    const body = enrollBody.envelope(req.body);
    const auth = service.enrollment.authenticate(enrollBody.field(body, 'token'));
    const r = await service.enrollment.enroll(auth, enrollBody.field(body, 'csr'), req.ip);
    req.log.info(
      { name: r.status === 'issued' ? r.name : undefined, status: r.status, ip: req.ip },
      'enrollment',
    );
    return answer(r, reply);
  });

  app.post<{ Params: { id: string } }>('/v1/requests/:id/status', async (req, reply) => {
    const { timestamp, signature } = pollBody.parse(req.body);
    return answer(await service.enrollment.poll(req.params.id, timestamp, signature), reply);
  });

  // Renewal: the TLS handshake proved the client holds the key of the certificate it presented;
  // the service checks the chain itself (any participant type may renew, whatever its key usage).
  app.post('/v1/renew', async (req) => {
    const body = renewBody.envelope(req.body);
    const current = await service.renewal.authenticate(peerChain(req));
    return service.renewal.renew(current, renewBody.field(body, 'csr'), req.ip);
  });

  /**
   * An admin call: the caller first (one credential: an API key or a login token), then the
   * right the route needs, then the request (query or body) through its schema. Refusals are
   * logged with their code and the kind of identity.
   */
  function adminRoute<I>(
    method: 'GET' | 'POST',
    url: string,
    right: Right,
    schema: { parse(input: unknown): I },
    handle: (input: I, caller: AdminCaller & { scope: Scope }) => Promise<unknown>,
  ): void {
    app.route({
      method,
      url,
      handler: async (req) => {
        let who: Identity | undefined;
        let actor: AuditActor | undefined;
        try {
          const caller = await service.admin.identify(authorizationHeaders(req.raw), req.ip);
          who = caller.who;
          actor = caller.actor;
          const scope = service.admin.allow(caller.who, right);
          return await handle(schema.parse(method === 'GET' ? req.query : req.body), { ...caller, scope });
        } catch (e) {
          // Who calls and what they may do: 401 and 403, as on the Control API (`control.refused`).
          if (e instanceof PollenError && (e.status === 401 || e.status === 403)) {
            void service.audit.refused({
              actor: actor ?? unidentified(req.ip),
              action: `${method} ${url}`,
              target: url,
              at: new Date(),
              outcome: `refused ${e.code}`,
              federation: null,
              detail: {},
            });
            req.log.warn(
              {
                event: 'admin.refused',
                code: e.code,
                identity: who?.kind ?? 'none',
                subject: who?.subject,
                org: who?.org,
                url: req.url,
              },
              'admin API call refused',
            );
          }
          throw e;
        }
      },
    });
  }
  const { admin } = service;
  // Issuing tokens decides who may enroll: an organisation's admin issues its tokens only.
  adminRoute('POST', '/v1/tokens', 'enrollment.decide', tokensBody, (b, c) => {
    admin.guard(c.who, 'enrollment.decide')(b.org);
    return service.tokens.issue(b, c.actor);
  });
  // An organisation's admin reads their organisation's entries (entryOrg); with
  // `redacted`, the others come as digests, so they can check the whole chain.
  adminRoute('GET', '/v1/audit', 'audit.read', auditQuery, async (q, c) => ({
    entries: await service.audit.log.list(
      {
        after: q.after,
        ...(q.since && { since: q.since }),
        ...(q.actor && { actor: q.actor }),
        ...(q.federation && { federation: q.federation }),
        ...(c.scope !== 'any' && {
          visible: (e: AuditEntry) => admin.sees(c.who, c.scope, entryOrg(e)),
        }),
        hidden: q.redacted ? 'redact' : 'skip',
      },
      q.limit,
    ),
  }));
  adminRoute('GET', '/v1/audit/checkpoints', 'audit.read', checkpointsQuery, async (q) => ({
    checkpoints: await service.audit.log.checkpoints(q.after, q.limit),
  }));
  adminRoute('GET', '/v1/requests', 'enrollment.decide', requestsQuery, async (q, c) => ({
    requests: (await service.requests.list(q.status)).filter((r) => admin.sees(c.who, c.scope, r.org)),
  }));
  adminRoute('POST', '/v1/requests/approve', 'enrollment.decide', approveBody, (b, c) =>
    service.requests.approve(b, c.actor, admin.guard(c.who, 'enrollment.decide')),
  );
  adminRoute('POST', '/v1/requests/reject', 'enrollment.decide', rejectBody, (b, c) =>
    service.requests.reject(b, c.actor, admin.guard(c.who, 'enrollment.decide')),
  );
  adminRoute('GET', '/v1/enrolled', 'enrollment.decide', enrolledQuery, async (q, c) => ({
    enrolled: (await service.certificates.list(q.type)).filter((r) => admin.sees(c.who, c.scope, r.org)),
  }));
  adminRoute('POST', '/v1/revoke', 'enrollment.decide', revokeBody, (b, c) =>
    service.certificates.revoke(b, c.actor, admin.guard(c.who, 'enrollment.decide')),
  );
  const accounts = service.serviceAccounts;
  adminRoute('POST', '/v1/service-accounts', 'service_account.manage', serviceAccountBody, (b, c) =>
    accounts.create(c.who, c.actor, b),
  );
  adminRoute('GET', '/v1/service-accounts', 'service_account.manage', noQuery, (_q, c) =>
    accounts.list(c.who),
  );
  adminRoute(
    'POST',
    '/v1/service-accounts/revoke',
    'service_account.manage',
    serviceAccountRevokeBody,
    (b, c) => accounts.revoke(c.who, c.actor, b.name),
  );
  return app;
}
