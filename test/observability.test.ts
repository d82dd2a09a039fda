/**
 * Metrics and health of a live federation, checked by real peers: a Certificate Service, a
 * SuperLink (enforcing the service's CRL) and two SuperNodes in this process over real mutual TLS,
 * each with its ops listener on a free port; a run of two rounds played through ServerAppIo, an
 * enrollment and a refused one. Debian's `promtool check metrics` lints every component's
 * scrape, and Debian's `prometheus` scrapes all of them every second while the run goes on: the
 * values are read back through its query API, and every dashboard panel's query and every alert
 * expression (the selector under a threshold) must find data, so none can name a missing metric.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { openAppChannel } from '../src/apps/app-channel.js';
import { RemoteGrid } from '../src/apps/remote-grid.js';
import { ServerAppIo } from '../src/gen/pollen/v1/appio_pb.js';
import { loadCa } from '../src/pki/ca.js';
import { createSiteCertificate } from '../src/pki/site.js';
import { ClientApp } from '../src/sdk/app.js';
import { Message } from '../src/sdk/message.js';
import { MetricRecord, RecordDict } from '../src/sdk/records.js';
import type { SuperLink } from '../src/superlink/superlink.js';
import { type SuperNode, startSuperNode } from '../src/supernode/supernode.js';
import type { RpcChannel } from '../src/transport/rpc-client.js';
import { loadTlsMaterial, type TlsMaterial } from '../src/transport/tls.js';
import { API_KEY, type LiveCertService, startLiveCertService, testPolicy } from './support/cert-service.js';
import { pollenInProcess } from './support/cli.js';
import { startLocalSuperLink } from './support/inproc.js';
import { runningRun } from './support/runs.js';

const MONITORING = resolve(import.meta.dirname, '../deploy/monitoring');
const LOCAL = { host: '127.0.0.1', port: 0 };
const dir = mkdtempSync(join(tmpdir(), 'pollen-observability-'));
let certs: LiveCertService;
let link: SuperLink;
const nodes: SuperNode[] = [];
const channels: RpcChannel[] = [];
let prometheus: ChildProcess | undefined;
let promUrl = '';
let runId = '';

const scrape = async (opsUrl: string | undefined): Promise<string> => {
  const res = await fetch(`${opsUrl}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return res.text();
};

/** The value of one sample of `text` (exposition format), by name and (a subset of) its labels. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

const freePort = (): Promise<number> =>
  new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
  });

async function query(expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
  const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
  const body = (await res.json()) as { status: string; error?: string; data: { result: never[] } };
  expect(body.status, `${expr}: ${body.error}`).toBe('success');
  return body.data.result;
}

async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function startPrometheus(targets: Record<string, string>): Promise<void> {
  const port = await freePort();
  const config = join(dir, 'prometheus.yml');
  mkdirSync(join(dir, 'tsdb'));
  // The sample's rules, on a one-second evaluation (the scrape test reads them back too).
  writeFileSync(
    config,
    [
      'global: { scrape_interval: 1s, evaluation_interval: 1s }',
      `rule_files: ['${join(MONITORING, 'alerts.yml')}']`,
      'scrape_configs:',
      ...Object.entries(targets).map(
        ([job, url]) => `  - { job_name: ${job}, static_configs: [{ targets: ['${new URL(url).host}'] }] }`,
      ),
      '',
    ].join('\n'),
  );
  prometheus = spawn(
    'prometheus',
    [
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(dir, 'tsdb')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  prometheus.stderr?.on('data', (d) => {
    log += String(d);
  });
  promUrl = `http://127.0.0.1:${port}`;
  await until(`prometheus to start (${log})`, async () =>
    (await fetch(`${promUrl}/-/ready`).catch(() => undefined))?.status === 200 ? true : undefined,
  );
}

beforeAll(async () => {
  certs = await startLiveCertService(join(dir, 'certs'), {
    name: 'obs',
    policy: testPolicy('obs', ['{ name: "all", match: { site_name_pattern: "site-*" }, action: approve }']),
    apiKey: API_KEY,
    metrics: LOCAL,
  });
  const ca = await loadCa(certs.caDir);
  const issue = async (name: string, type: 'server' | 'client'): Promise<TlsMaterial> => {
    const c = await createSiteCertificate(ca, {
      name,
      type,
      outDir: join(dir, name),
      validityDays: 2,
      ...(type === 'server' && { hosts: ['127.0.0.1', 'localhost'] }),
    });
    return loadTlsMaterial({ cert: c.certPath, key: c.keyPath, ca: c.rootPath });
  };
  link = await startLocalSuperLink({
    stateDir: join(dir, 'superlink'),
    tls: await issue('superlink', 'server'),
    nodeAuth: false,
    crl: { url: certs.svc.url, refreshMs: 60_000 },
    metrics: LOCAL,
    log: pino({ level: 'silent' }),
  });
  const app = new ClientApp({
    train: () => new RecordDict({ metrics: new MetricRecord({ 'num-examples': 1 }) }),
  });
  for (const name of ['site-0', 'site-1']) {
    const node = await startSuperNode({
      // site-0 offers a GPU: the run holds it.
      ...(name === 'site-0' && { resources: { gpus: [0] } }),
      superlink: link.fleetUrl,
      tls: await issue(name, 'client'),
      name,
      workDir: join(dir, name),
      app,
      metrics: LOCAL,
      log: pino({ level: 'silent' }),
      pollIntervalMs: 100,
    });
    nodes.push(node);
    await node.ready;
  }
  await startPrometheus({
    'pollen-superlink': link.opsUrl!,
    'pollen-supernode': nodes[0]!.opsUrl!,
    'pollen-cert-service': certs.svc.opsUrl!,
  });

  // The activity: one enrollment issued, one refused (a forged token), a run of two rounds.
  expect((await certs.enroll('site-9')).status).toBe(200);
  expect((await certs.post('/v1/enroll', { token: 'not-a-token', csr: 'x' })).status).toBe(401);
  runId = await runningRun(link.state);
  await link.state.setRunToken(runId, 'run-token');
  const channel = openAppChannel({ url: link.serverAppIoUrl, token: 'run-token', runId, appPath: '' });
  channels.push(channel);
  const appIo = channel.client(ServerAppIo);
  const grid = new RemoteGrid(appIo, channel.chunks(appIo), runId);
  const ids = nodes.map((n) => n.nodeId);
  for (const round of [1, 2]) {
    const messages = ids.map((dstNodeId) =>
      Message.create({ dstNodeId, messageType: 'train', content: new RecordDict(), ttlSeconds: 60 }),
    );
    expect(await grid.sendAndReceive(messages, { timeoutMs: 30_000 })).toHaveLength(2);
    await grid.reportRound({ round, metrics: {}, nodeIds: ids });
  }
  // A ServerApp with a wrong run token is refused (an RPC error and an authentication failure).
  const forged = openAppChannel({ url: link.serverAppIoUrl, token: 'forged', runId, appPath: '' });
  channels.push(forged);
  await expect(forged.client(ServerAppIo).pushLogs({ lines: ['x'] })).rejects.toThrow();
  await appIo.finishRun({ subStatus: 'completed' });
}, 60_000);

afterAll(async () => {
  prometheus?.kill('SIGTERM');
  for (const c of channels) c.close();
  for (const n of nodes) await n.close();
  await link?.close();
  await certs?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('each component’s /metrics', () => {
  it('is clean under promtool check metrics', async () => {
    for (const url of [link.opsUrl, nodes[0]!.opsUrl, certs.svc.opsUrl]) {
      const text = await scrape(url);
      const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
      expect(`${lint.stdout}${lint.stderr}`, url).toBe('');
      expect(lint.status, url).toBe(0);
      expect(sample(text, 'process_cpu_seconds_total')).toBeGreaterThan(0);
    }
  });

  it('counts the SuperLink’s nodes, runs, rounds, RPCs and traffic, without a run or node id label', async () => {
    const text = await scrape(link.opsUrl);
    expect(sample(text, 'pollen_nodes', { status: 'online', federation: 'default' })).toBe(2);
    expect(sample(text, 'pollen_nodes', { status: 'offline', federation: 'default' })).toBe(0);
    expect(sample(text, 'pollen_runs', { state: 'completed' })).toBe(1);
    expect(sample(text, 'pollen_runs_finished_total', { outcome: 'completed' })).toBe(1);
    expect(sample(text, 'pollen_round_participants_count')).toBe(2);
    expect(sample(text, 'pollen_round_participants_sum')).toBe(4);
    expect(sample(text, 'pollen_round_duration_seconds_count')).toBe(2);
    const pulls = { api: 'fleet', method: 'PullMessages', code: 'OK' };
    expect(sample(text, 'pollen_rpc_server_handled_total', pulls)).toBeGreaterThanOrEqual(2);
    expect(
      sample(text, 'pollen_rpc_server_handling_seconds_count', { api: 'fleet', method: 'PushMessages' }),
    ).toBe(4);
    expect(sample(text, 'pollen_rpc_received_bytes_total', { api: 'fleet' })).toBeGreaterThan(1000);
    expect(sample(text, 'pollen_rpc_sent_bytes_total', { api: 'serverappio' })).toBeGreaterThan(100);
    expect(sample(text, 'pollen_message_queue_depth', { queue: 'instructions' })).toBe(0);
    expect(sample(text, 'pollen_chunk_memory_used_limit_bytes')).toBe(1024 ** 3);
    expect(
      sample(text, 'pollen_certificate_expiry_timestamp_seconds', { certificate: 'superlink' }),
    ).toBeGreaterThan(Date.now() / 1000 + 86_400);
    expect(sample(text, 'pollen_crl_age_seconds')).toBeLessThan(120);
    expect(
      sample(text, 'pollen_rpc_server_handled_total', {
        api: 'serverappio',
        method: 'PushLogs',
        code: 'Unauthenticated',
      }),
    ).toBe(1);
    expect(
      sample(text, 'pollen_auth_failures_total', { api: 'serverappio', reason: 'unauthenticated' }),
    ).toBe(1);
    expect(text).not.toContain(runId);
    for (const n of nodes) expect(text).not.toContain(n.nodeId);
  });

  it('refuses and counts a call without a certificate of the project as an authentication failure', async () => {
    const res = await fetch(`${link.fleetUrl}/pollen.v1.Fleet/Heartbeat`).catch(() => undefined);
    expect(res).toBeUndefined(); // the TLS handshake fails: a certificate is required
    const text = await until('the refusal to be counted', async () => {
      const t = await scrape(link.opsUrl);
      return sample(t, 'pollen_auth_failures_total', { api: 'fleet', reason: 'tls_handshake' })
        ? t
        : undefined;
    });
    expect(
      sample(text, 'pollen_auth_failures_total', { api: 'fleet', reason: 'tls_handshake' }),
    ).toBeGreaterThan(0);
  });

  it('counts the Certificate Service’s enrollments, token uses and refusals, and every certificate’s expiry', async () => {
    const text = await scrape(certs.svc.opsUrl);
    expect(sample(text, 'pollen_enrollments_total', { outcome: 'issued' })).toBe(1);
    expect(sample(text, 'pollen_enrollments_total', { outcome: 'refused' })).toBe(1);
    expect(sample(text, 'pollen_enrollment_token_uses_total', { result: 'refused' })).toBe(1);
    expect(sample(text, 'pollen_auth_failures_total', { api: 'cert-service', reason: 'token_invalid' })).toBe(
      1,
    );
    expect(sample(text, 'pollen_enrollment_pending_requests')).toBe(0);
    expect(
      sample(text, 'pollen_http_requests_total', { route: '/v1/enroll', method: 'POST', code: '200' }),
    ).toBe(1);
    for (const certificate of ['cert-service', 'intermediate-ca', 'root-ca', 'client:site-9'])
      expect(
        sample(text, 'pollen_certificate_expiry_timestamp_seconds', { certificate }),
        certificate,
      ).toBeGreaterThan(Date.now() / 1000);
  });

  it('tells a SuperNode’s connection, runs and certificate', async () => {
    const text = await scrape(nodes[0]!.opsUrl);
    expect(sample(text, 'pollen_supernode_connected')).toBe(1);
    expect(sample(text, 'pollen_gpus_offered')).toBe(1);
    expect(sample(text, 'pollen_gpu_held_runs', { gpu: '0' })).toBeGreaterThanOrEqual(0);
    expect(
      sample(text, 'pollen_certificate_expiry_timestamp_seconds', { certificate: 'supernode' }),
    ).toBeGreaterThan(0);
  });
});

describe('/healthz, /readyz and pollen ready', () => {
  it('answer alive and ready with each check named, and 404/405 for anything else', async () => {
    for (const url of [link.opsUrl, nodes[1]!.opsUrl, certs.svc.opsUrl]) {
      const health = await fetch(`${url}/healthz`);
      expect(await health.json()).toEqual({ status: 'ok' });
      const ready = await fetch(`${url}/readyz`);
      expect(ready.status).toBe(200);
      const body = (await ready.json()) as { status: string; checks: Record<string, string> };
      expect(body.status).toBe('ready');
      expect(Object.values(body.checks).every((c) => c === 'ok')).toBe(true);
      expect(Object.keys(body.checks)).toContain('store');
      expect((await fetch(`${url}/nope`)).status).toBe(404);
      expect((await fetch(`${url}/metrics`, { method: 'POST' })).status).toBe(405);
    }
  });

  it('pollen ready waits for 200, and fails with UNAVAILABLE when nothing answers', async () => {
    const ok = await pollenInProcess(['ready', new URL(link.opsUrl!).host, '--json']);
    expect(ok.code).toBe(0);
    expect(ok.json()).toMatchObject({ ok: true, ready: true, readiness: { status: 'ready' } });
    const port = await freePort();
    const down = await pollenInProcess(['ready', `127.0.0.1:${port}`, '--timeout', '0', '--json']);
    expect(down.code).toBe(7);
    expect(down.json()).toMatchObject({ ok: false, error: { code: 'UNAVAILABLE' } });
  });
});

describe('Prometheus scraping the federation', () => {
  it('reads the run’s values back through its query API', async () => {
    const completed = await until('the finished run in Prometheus', async () => {
      const r = await query('pollen_runs_finished_total{outcome="completed"}');
      return r.length > 0 && r[0]!.value[1] === '1' ? r : undefined;
    });
    expect(completed[0]!.metric).toMatchObject({ job: 'pollen-superlink', component: 'superlink' });
    const online = await query('pollen_nodes{status="online", federation="default"}');
    expect(online.map((r) => r.value[1])).toEqual(['2']);
    const up = await until('every target scraped', async () => {
      const r = await query('up');
      return r.length === 3 ? r : undefined;
    });
    expect(up.map((r) => [r.metric.job, r.value[1]]).sort()).toEqual([
      ['pollen-cert-service', '1'],
      ['pollen-superlink', '1'],
      ['pollen-supernode', '1'],
    ]);
  });

  it('has data for every dashboard panel and every alert expression', async () => {
    // Rates need two samples of each series: wait for the second scrape after the activity.
    await until('two scrapes', async () => {
      const [n] = await query('count_over_time(pollen_enrollments_total[1m])');
      return Number(n?.value[1] ?? 0) >= 3 ? true : undefined;
    });
    const dashboard = JSON.parse(
      readFileSync(join(MONITORING, 'grafana', 'pollen-dashboard.json'), 'utf8'),
    ) as {
      panels: { title: string; targets?: { expr: string }[] }[];
    };
    const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => [p.title, t.expr] as const));
    expect(exprs.length).toBeGreaterThan(25);
    const rules = parseYaml(readFileSync(join(MONITORING, 'alerts.yml'), 'utf8')) as {
      groups: { rules: { alert: string; expr: string }[] }[];
    };
    // A threshold rule has data to compare even when it does not fire: query the side before it.
    for (const r of rules.groups.flatMap((g) => g.rules))
      exprs.push([r.alert, r.expr.split(/\s(?:==|!=|>=|<=|>|<)\s/)[0]!]);
    const empty: string[] = [];
    for (const [title, expr] of exprs) if ((await query(expr)).length === 0) empty.push(`${title}: ${expr}`);
    expect(empty).toEqual([]);
  });
});
