import { createServer, type Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { pollenInProcess } from '../../../test/support/cli.js';
import { readyzUrl } from './ready.js';

let server: Server | undefined;
afterEach(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));

/** A stand-in ops listener answering /readyz with `status` and `body`. */
const listen = (status: number, body: unknown): Promise<string> =>
  new Promise((resolve) => {
    server = createServer((_req, res) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    }).listen(0, '127.0.0.1', () => resolve(`127.0.0.1:${(server!.address() as { port: number }).port}`));
  });

describe('pollen ready', () => {
  it('takes HOST:PORT or a URL', () => {
    expect(readyzUrl('127.0.0.1:9095')).toBe('http://127.0.0.1:9095/readyz');
    expect(readyzUrl('http://[::1]:9096/metrics')).toBe('http://[::1]:9096/readyz');
  });

  it('fails with NOT_READY naming the failing check once the timeout has passed', async () => {
    const address = await listen(503, {
      status: 'not-ready',
      failing: 'store',
      checks: { store: 'failed: database is locked' },
    });
    const r = await pollenInProcess(['ready', address, '--timeout', '0.3', '--json']);
    expect(r.code).toBe(7);
    const doc = r.json<{ ok: boolean; error: { code: string; message: string; hint: string } }>();
    expect(doc.error.code).toBe('NOT_READY');
    expect(doc.error.message).toContain('store failed: database is locked');
    expect(doc.error.hint).toContain('--timeout');
  });

  it('refuses an address that is not a Pollen ops listener with UNEXPECTED_ANSWER', async () => {
    const address = await listen(404, { error: 'no' });
    const r = await pollenInProcess(['ready', address, '--timeout', '0', '--json']);
    expect(r.json()).toMatchObject({ ok: false, error: { code: 'UNEXPECTED_ANSWER' } });
  });
});
