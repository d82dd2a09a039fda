import { afterEach, describe, expect, it } from 'vitest';
import { type OpsServer, readiness, startOpsServer } from './ops-server.js';
import { componentRegistry } from './registry.js';

let server: OpsServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe('readiness', () => {
  it('is ready when every check passes, and names the first that fails or hangs', async () => {
    expect(await readiness({ store: () => {}, ca: async () => {} })).toEqual({
      status: 'ready',
      checks: { store: 'ok', ca: 'ok' },
    });
    const r = await readiness(
      {
        store: () => {
          throw new Error('database is locked');
        },
        listeners: () => new Promise(() => {}),
      },
      20,
    );
    expect(r).toEqual({
      status: 'not-ready',
      failing: 'store',
      checks: { store: 'failed: database is locked', listeners: 'failed: no answer within 20 ms' },
    });
  });
});

describe('the ops listener', () => {
  it('answers 503 with the failing check while not ready, and ADDRESS_IN_USE for a taken port', async () => {
    let ready = false;
    server = await startOpsServer({
      host: '127.0.0.1',
      port: 0,
      metrics: componentRegistry('test'),
      checks: {
        store: () => {
          if (!ready) throw new Error('not opened yet');
        },
      },
    });
    const res = await fetch(`${server.url}/readyz`);
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({
      status: 'not-ready',
      failing: 'store',
      checks: { store: 'failed: not opened yet' },
    });
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    ready = true;
    expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
    await expect(
      startOpsServer({ host: '127.0.0.1', port: server.port, metrics: componentRegistry('x'), checks: {} }),
    ).rejects.toMatchObject({ code: 'ADDRESS_IN_USE', hint: expect.stringContaining('--metrics-address') });
  });

  it('serves process metrics without the gauges promtool refuses', async () => {
    server = await startOpsServer({
      host: '127.0.0.1',
      port: 0,
      metrics: componentRegistry('test'),
      checks: {},
    });
    const text = await (await fetch(`${server.url}/metrics`)).text();
    expect(text).toContain('process_resident_memory_bytes{component="test"}');
    expect(text).toContain('nodejs_active_handles{');
    expect(text).not.toMatch(/^nodejs_active_\w+_total/m);
  });
});
