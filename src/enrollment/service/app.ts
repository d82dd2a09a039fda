import type { ServerOptions as HttpsServerOptions } from 'node:https';
import type { DetailedPeerCertificate, TLSSocket } from 'node:tls';
import Fastify, {
  type FastifyInstance,
  type FastifyRequest,
  type FastifyServerOptions,
  LogController,
} from 'fastify';
import type { Logger } from 'pino';
import { PollenError, toPollenError } from '../../errors.js';
import { VERSION } from '../../version.js';
import type { CertificateService } from './service.js';

/** Bodies larger than this are refused before parsing. */
export const MAX_BODY_BYTES = 64 * 1024;

type Body = Record<string, unknown>;

function body(req: FastifyRequest): Body {
  const b = req.body;
  if (b === null || typeof b !== 'object' || Array.isArray(b))
    throw new PollenError('INVALID_REQUEST', 'The request body must be a JSON object');
  return b as Body;
}

/** Refuse fields we do not know: a request can never smuggle in a type, role or name. */
function only(b: Body, allowed: string[]): Body {
  const extra = Object.keys(b).filter((k) => !allowed.includes(k));
  if (extra.length)
    throw new PollenError(
      'INVALID_REQUEST',
      `Unknown field${extra.length > 1 ? 's' : ''}: ${extra.join(', ')}`,
      {
        hint: `This call accepts: ${allowed.join(', ')}.`,
      },
    );
  return b;
}

/**
 * The HTTP face of the Certificate Service: JSON in, JSON out, one error shape. Built without
 * listening so tests can call it in-process with `app.inject()`.
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
    let e: PollenError;
    const code = (err as { code?: string }).code ?? '';
    if (err instanceof PollenError) e = err;
    else if (code === 'FST_ERR_CTP_BODY_TOO_LARGE')
      e = new PollenError('PAYLOAD_TOO_LARGE', `The request body is larger than ${MAX_BODY_BYTES} bytes`);
    else if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
      e = new PollenError(
        'INVALID_REQUEST',
        'The request body must be JSON (Content-Type: application/json)',
      );
    else if (code.startsWith('FST_ERR') && ((err as { statusCode?: number }).statusCode ?? 500) < 500)
      e = new PollenError('INVALID_REQUEST', 'The request body is not valid JSON');
    else e = toPollenError(err);
    if (e.code === 'INTERNAL') req.log.error({ err }, 'internal error');
    else req.log.info({ code: e.code, url: req.url, ip: req.ip, detail: e.detail }, e.message);
    void reply.status(e.status).send({ error: e.toJSON() });
  });
  app.setNotFoundHandler((req, reply) => {
    const e = new PollenError('ROUTE_NOT_FOUND', `No such API: ${req.method} ${req.url.split('?')[0]}`);
    void reply.status(404).send({ error: e.toJSON() });
  });

  const admin = (req: FastifyRequest) => service.authenticate(req.headers.authorization);

  app.get('/v1/health', async () => ({ status: 'ok', version: VERSION, backend: service.backend }));
  app.get('/v1/ca', async () => service.caInfo());
  app.get('/v1/crl', async (req, reply) => {
    const pem = await service.crl();
    if ((req.query as { format?: string }).format === 'der') {
      const der = Buffer.from(pem.replace(/-----[^-]+-----|\s+/g, ''), 'base64');
      return reply.type('application/pkix-crl').send(der);
    }
    return reply.type('application/x-pem-file').send(pem);
  });

  app.post('/v1/enroll', async (req, reply) => {
    const b = only(body(req), ['token', 'csr']);
    const r = await service.enroll({ token: b.token, csr: b.csr, ip: req.ip });
    if (r.status === 'pending') void reply.status(202).header('retry-after', String(r.retryAfter));
    req.log.info(
      { name: r.status === 'issued' ? r.name : undefined, status: r.status, ip: req.ip },
      'enrollment',
    );
    return r;
  });

  app.post<{ Params: { id: string } }>('/v1/requests/:id/status', async (req, reply) => {
    const b = only(body(req), ['timestamp', 'signature']);
    const r = await service.poll({ id: req.params.id, timestamp: b.timestamp, signature: b.signature });
    if (r.status === 'pending') void reply.status(202).header('retry-after', String(r.retryAfter));
    return r;
  });

  app.post('/v1/renew', async (req) => {
    const b = only(body(req), ['csr']);
    // The TLS handshake proved the client holds the key of the certificate it presented; the
    // service checks the chain itself (any participant type may renew, whatever its key usage).
    const socket = req.raw.socket as TLSSocket;
    const chain: string[] = [];
    let c: DetailedPeerCertificate | undefined = socket.getPeerCertificate?.(true);
    while (c?.raw && chain.length < 5) {
      chain.push(`-----BEGIN CERTIFICATE-----\n${c.raw.toString('base64')}\n-----END CERTIFICATE-----\n`);
      c = c.issuerCertificate === c ? undefined : c.issuerCertificate;
    }
    return service.renew({ peerChain: chain, csr: b.csr });
  });

  app.post('/v1/tokens', async (req) => {
    const actor = admin(req);
    const b = only(body(req), ['subjects', 'type', 'role']);
    return service.issueTokens({ subjects: b.subjects, type: b.type, role: b.role }, actor);
  });
  app.get('/v1/audit', async (req) => {
    admin(req);
    const q = req.query as { after?: string; limit?: string };
    return { entries: await service.listAudit(Number(q.after ?? 0), Number(q.limit ?? 1000)) };
  });
  app.get('/v1/requests', async (req) => {
    admin(req);
    return { requests: await service.listRequests((req.query as { status?: string }).status ?? 'pending') };
  });
  app.post('/v1/requests/approve', async (req) => {
    const actor = admin(req);
    const b = only(body(req), ['names', 'pattern', 'type']);
    return service.approve(b, actor);
  });
  app.post('/v1/requests/reject', async (req) => {
    const actor = admin(req);
    const b = only(body(req), ['names', 'pattern', 'type', 'reason']);
    return service.reject(b, actor);
  });
  app.get('/v1/enrolled', async (req) => {
    admin(req);
    return { enrolled: await service.listEnrolled((req.query as { type?: string }).type) };
  });
  app.post('/v1/revoke', async (req) => {
    const actor = admin(req);
    const b = only(body(req), ['names', 'serials', 'reason']);
    return service.revoke(b, actor);
  });
  return app;
}
