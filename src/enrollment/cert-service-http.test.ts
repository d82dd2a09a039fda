import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import { type AddressInfo, createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { twoCas } from '../../test/support/fixtures.js';
import { PollenError } from '../errors.js';
import type { LoadedCa } from '../pki/ca.js';
import { describeKey } from '../pki/keys.js';
import { issueSiteCertificate } from '../pki/profiles.js';
import {
  CertServiceHttp,
  type CertServiceHttpOptions,
  checkCertServiceUrl,
  responseError,
} from './cert-service-http.js';

// The one client of the Certificate Service against a stand-in HTTPS server whose answers each
// test chooses: how answers, refusals and failures become PollenErrors, and which are retryable.

let tmp: string;
let ca: LoadedCa;
let other: LoadedCa;
let server: Server | undefined;
let client: CertServiceHttp | undefined;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'pollen-http-'));
  ({ ca, other } = await twoCas(tmp, 'Http Test', 'Other'));
});
afterEach(async () => {
  await client?.close();
  client = undefined;
  server?.closeAllConnections();
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
  server = undefined;
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** An HTTPS server on 127.0.0.1 with a certificate of `issuer` (with the service identity unless told). */
async function serve(
  handle: (
    req: { method: string; url: string; headers: Record<string, unknown>; body: string },
    res: ServerResponse,
  ) => void,
  o: { issuer?: LoadedCa; identity?: boolean } = {},
): Promise<string> {
  const issuer = o.issuer ?? ca;
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const leaf = issueSiteCertificate(
    issuer.issuer,
    publicKey.export({ type: 'spki', format: 'der' }),
    describeKey(publicKey),
    {
      name: 'cert-service',
      type: 'server',
      project: issuer.meta.name,
      hosts: ['127.0.0.1'],
      service: o.identity ?? true,
    },
    86_400_000,
  );
  server = createServer(
    {
      key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
      cert: `${leaf.pem}${issuer.intermediatePem}\n`,
    },
    (req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () =>
        handle({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body }, res),
      );
    },
  );
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  return `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function reply(status: number, body?: unknown) {
  return (_req: unknown, res: ServerResponse) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(body === undefined ? '' : JSON.stringify(body));
  };
}

function open(url: string, o: Partial<CertServiceHttpOptions> = {}) {
  client = new CertServiceHttp({ url, trust: { project: ca.rootPem }, ...o });
  return client;
}

async function failure(p: Promise<unknown>): Promise<PollenError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(PollenError);
  return e as PollenError;
}

describe('CertServiceHttp', () => {
  it('decodes an answer, sends JSON bodies, and the API key on admin calls only', async () => {
    const seen: { url: string; auth: unknown; type: unknown; body: string }[] = [];
    const url = await serve((req, res) => {
      seen.push({
        url: req.url,
        auth: req.headers.authorization,
        type: req.headers['content-type'],
        body: req.body,
      });
      reply(202, { status: 'pending', n: 1 })(req, res);
    });
    const http = open(`${url}/prefix`, { apiKey: 'k1' });
    const schema = z.object({ status: z.literal('pending'), n: z.number() });
    expect(await http.json('POST', 'v1/enroll', schema, { body: { a: 1 } })).toEqual({
      status: 'pending',
      n: 1,
    });
    expect(await http.request('GET', '/v1/requests', { admin: true })).toEqual({
      status: 202,
      json: { status: 'pending', n: 1 },
    });
    expect(seen).toEqual([
      { url: '/prefix/v1/enroll', auth: undefined, type: 'application/json', body: '{"a":1}' },
      { url: '/prefix/v1/requests', auth: 'Bearer k1', type: undefined, body: '' },
    ]);
    const wrong = await failure(http.json('GET', 'v1/x', z.object({ other: z.string() })));
    expect(wrong).toMatchObject({ code: 'UNEXPECTED_ANSWER', retryable: false });
    expect(wrong.message).toBe('Unexpected answer from the Certificate Service (GET /prefix/v1/x)');
    const noKey = open(url);
    expect((await failure(noKey.request('GET', 'v1/requests', { admin: true }))).code).toBe(
      'API_KEY_REQUIRED',
    );
  });

  it("gives back the service's own error: code, message, hint and public data", async () => {
    const url = await serve(
      reply(409, {
        error: {
          code: 'REQUEST_ALREADY_DECIDED',
          message: 'Request r1 was already approved',
          hint: 'h',
          requestId: 'r1',
        },
      }),
    );
    const e = await failure(open(url).request('POST', 'v1/requests/approve', { body: {} }));
    expect(e.toJSON()).toEqual({
      code: 'REQUEST_ALREADY_DECIDED',
      message: 'Request r1 was already approved',
      hint: 'h',
      requestId: 'r1',
    });
    expect(e.retryable).toBe(false);
    expect(e.detail).toBe('POST /v1/requests/approve → HTTP 409 REQUEST_ALREADY_DECIDED');
  });

  it('gives a code it does not know, or a bare answer, the code its status calls for', async () => {
    const cases: [number, unknown, string, boolean][] = [
      [500, { error: { code: 'NEW_KIND_OF_FAILURE', message: 'm' } }, 'UNAVAILABLE', true],
      [429, { error: { code: 'SLOW_DOWN', message: 'm' } }, 'RATE_LIMITED', true],
      [400, { error: { code: 'NEWER_CHECK', message: 'm' } }, 'INVALID_REQUEST', false],
      [503, undefined, 'UNAVAILABLE', true],
      [502, '<html>bad gateway</html>', 'UNAVAILABLE', true],
      [429, undefined, 'RATE_LIMITED', true],
      [
        500,
        { error: { code: 'INTERNAL', message: 'Internal error (reference 0a1b2c3d4e)' } },
        'INTERNAL',
        true,
      ],
      [403, undefined, 'FORBIDDEN', false],
      [404, undefined, 'ROUTE_NOT_FOUND', false],
      [418, undefined, 'INVALID_REQUEST', false],
    ];
    for (const [status, body, code, retryable] of cases) {
      const url = await serve(reply(status, body));
      const e = await failure(open(url).request('GET', 'v1/ca'));
      expect({ status, code: e.code, retryable: e.retryable }).toEqual({ status, code, retryable });
      await client!.close();
      client = undefined;
      server!.closeAllConnections();
      await new Promise((r) => server!.close(r));
      server = undefined;
    }
    expect(responseError(404, undefined, 'GET /v1/ca', false).message).toBe(
      'No such endpoint: GET /v1/ca (is this a Pollen Certificate Service?)',
    );
    // a bare 401 is about the API key only when one was sent
    expect(responseError(401, undefined, 'GET /v1/requests', true).code).toBe('API_KEY_INVALID');
    expect(responseError(401, undefined, 'POST /v1/enroll', false).code).toBe('INVALID_REQUEST');
  });

  it('classifies failures to connect: refused (retryable), cancelled (not), TLS (not)', async () => {
    const url = await serve(() => undefined); // holds every request
    const port = Number(new URL(url).port);
    const closed = await new Promise<number>((r) => {
      const s = createNetServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as AddressInfo).port;
        s.close(() => r(p));
      });
    });
    const refused = await failure(
      new CertServiceHttp({ url: `https://127.0.0.1:${closed}`, trust: { project: ca.rootPem } }).request(
        'GET',
        'v1/ca',
      ),
    );
    expect(refused).toMatchObject({ code: 'UNAVAILABLE', retryable: true });
    expect(refused.message).toBe(
      `Cannot reach the Certificate Service at https://127.0.0.1:${closed} (ECONNREFUSED)`,
    );

    const controller = new AbortController();
    const pending = open(url, { signal: controller.signal }).request('POST', 'v1/enroll', { body: {} });
    await new Promise<void>((r) => server!.once('request', () => r()));
    controller.abort();
    const cancelled = await failure(pending);
    expect(cancelled).toMatchObject({ code: 'CANCELLED', retryable: false });
    expect(cancelled.message).toBe(
      `The request to the Certificate Service at https://127.0.0.1:${port} was cancelled`,
    );

    const foreign = await failure(
      new CertServiceHttp({ url, trust: { project: other.rootPem, label: 'the pinned root CA' } }).request(
        'GET',
        'v1/ca',
      ),
    );
    expect(foreign).toMatchObject({ code: 'TLS_FAILED', retryable: false });
    expect(foreign.message).toMatch(
      /^TLS to the Certificate Service at .* failed \(\w+\): its certificate does not chain to the pinned root CA$/,
    );
  });

  it('sends nothing to a server of the project without the service identity', async () => {
    const seen: string[] = [];
    const url = await serve(
      (req, res) => {
        seen.push(req.url);
        reply(200, {})(req, res);
      },
      { identity: false },
    );
    const e = await failure(open(url, { apiKey: 'secret' }).request('GET', 'v1/requests', { admin: true }));
    expect(e).toMatchObject({ code: 'TLS_FAILED', retryable: false });
    expect(e.message).toBe(
      `The server at ${url} is not the project's Certificate Service (its certificate lacks the service identity); nothing was sent`,
    );
    expect(seen).toEqual([]);
    // trusting nothing, only the public root may be read: no body, no API key
    const blind = new CertServiceHttp({ url, trust: { nothing: true }, apiKey: 'secret' });
    try {
      expect((await blind.request('GET', 'v1/ca')).status).toBe(200);
      expect((await failure(blind.request('POST', 'v1/enroll', { body: { token: 't' } }))).code).toBe(
        'INTERNAL',
      );
      expect((await failure(blind.request('GET', 'v1/requests', { admin: true }))).code).toBe('INTERNAL');
    } finally {
      await blind.close();
    }
    expect(seen).toEqual(['/v1/ca']);
  });

  it('accepts only https URLs without credentials, query or fragment', () => {
    expect(checkCertServiceUrl('https://cs.example.com:8443/')).toBe('https://cs.example.com:8443');
    expect(checkCertServiceUrl('https://cs.example.com/pki')).toBe('https://cs.example.com/pki');
    for (const bad of [
      'cs.example.com',
      'http://cs.example.com',
      'https://u:p@cs',
      'https://cs/?a=1',
      'https://cs/#x',
    ])
      expect(() => checkCertServiceUrl(bad), bad).toThrow(
        expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
      );
  });
});
