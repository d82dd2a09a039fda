import { spawn, spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEntry } from '../src/audit/entry.js';
import { verifyAuditTrail } from '../src/audit/verify.js';
import { loadPolicy } from '../src/enrollment/policy-load.js';
import { issueToken, loadTokenSigner } from '../src/enrollment/token.js';
import { initCa } from '../src/pki/ca.js';
import { createCsrFromKey } from '../src/pki/csr.js';
import { testPolicy } from './support/cert-service.js';
import { POLLEN_BIN, tempDir } from './support/cli.js';

// `pollen cert-service --workers 2`: two processes on one port and one SQLite store.

const t = tempDir('pollen-workers-');
const caDir = join(t.dir, 'ca');
let child: ReturnType<typeof spawn>;
/** The primary's ops listener: the workers' metrics together. */
let metricsUrl = '';
let port = 0;
let agent: Agent;

const API_KEY = `pollen_${'w'.repeat(43)}`;
const policyFile = join(t.dir, 'policy.yaml');
// Sites named lab-* wait for an admin; every other site is approved at once.
const POLICY = testPolicy('workers', [
  '{ name: "labs-wait", match: { site_name_pattern: "lab-*" }, action: pending }',
  '{ name: "others-auto", match: {}, action: approve }',
]);

beforeAll(async () => {
  await initCa({ name: 'Workers', dir: caDir });
  writeFileSync(join(t.dir, 'key.txt'), `${API_KEY}\n`);
  writeFileSync(policyFile, POLICY);
  child = spawn(
    process.execPath,
    [
      POLLEN_BIN,
      '--json',
      'cert-service',
      '-c',
      caDir,
      '-w',
      join(t.dir, 'ws'),
      '--host',
      '127.0.0.1',
      '-p',
      '0',
      '--api-key-file',
      join(t.dir, 'key.txt'),
      '--workers',
      '2',
      '--policy',
      policyFile,
      '--log-level',
      'warn',
      '--metrics-address',
      '127.0.0.1:0',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  port = await new Promise<number>((res, rej) => {
    child.stdout!.on('data', (d) => {
      out += d;
      try {
        const started = JSON.parse(out) as { port: number; metrics: string };
        metricsUrl = started.metrics;
        res(started.port);
      } catch {
        // not complete yet
      }
    });
    child.on('exit', (code) => rej(new Error(`cert-service exited ${code}`)));
  });
  agent = new Agent({ connect: { ca: readFileSync(join(caDir, 'rootCA.pem'), 'utf8') }, connections: 32 });
});
afterAll(async () => {
  await agent?.close();
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
  t.cleanup();
});

describe('cert-service --workers 2', () => {
  it('spreads connections over both workers and still gives one certificate per single-use token', async () => {
    const signer = loadTokenSigner(caDir);
    const token = issueToken(signer, { subject: 'hospital-race', policy: loadPolicy(policyFile) }).token;
    const results = await Promise.all(
      Array.from({ length: 50 }, async () => {
        const csr = createCsrFromKey(
          generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey,
          'hospital-race',
        );
        const r = await request(`https://127.0.0.1:${port}/v1/enroll`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ token, csr }),
          dispatcher: agent,
        });
        return { status: r.statusCode, body: (await r.body.json()) as { error?: { code: string } } };
      }),
    );
    expect(results.filter((r) => r.status === 200)).toHaveLength(1);
    expect(results.filter((r) => r.body.error?.code === 'TOKEN_USED')).toHaveLength(49);
    // and ordinary enrollments keep working on both
    const many = await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const name = `site-${i}`;
        const r = await request(`https://127.0.0.1:${port}/v1/enroll`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            token: issueToken(signer, { subject: name, policy: loadPolicy(policyFile) }).token,
            csr: createCsrFromKey(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, name),
          }),
          dispatcher: agent,
        });
        await r.body.dump();
        return r.statusCode;
      }),
    );
    expect(many.every((s) => s === 200)).toBe(true);
    // both processes appended to one unbroken audit chain
    const r = await request(`https://127.0.0.1:${port}/v1/audit?limit=10000`, {
      headers: { authorization: `Bearer ${API_KEY}` },
      dispatcher: agent,
    });
    const { entries } = (await r.body.json()) as { entries: AuditEntry[] };
    expect(entries.filter((e) => e.action === 'certificate.issued')).toHaveLength(41);
    expect(verifyAuditTrail(entries, [], undefined).entries).toBe(entries.length);
  });

  it('gives a request one decision when two admins approve and two reject it at once across workers', async () => {
    const signer = loadTokenSigner(caDir);
    const post = async (path: string, body: unknown, admin = false) => {
      // a fresh connection each: the listener hands connections to either worker
      const dispatcher = new Agent({ connect: { ca: readFileSync(join(caDir, 'rootCA.pem'), 'utf8') } });
      try {
        const r = await request(`https://127.0.0.1:${port}${path}`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            ...(admin ? { authorization: `Bearer ${API_KEY}` } : {}),
          },
          body: JSON.stringify(body),
          dispatcher,
        });
        return { status: r.statusCode, json: (await r.body.json()) as Record<string, any> };
      } finally {
        await dispatcher.close();
      }
    };
    const decided: { id: string; name: string; holds: string }[] = [];
    for (let i = 0; i < 20; i++) {
      const name = `lab-${i}`;
      const p = await post('/v1/enroll', {
        token: issueToken(signer, { subject: name, policy: loadPolicy(policyFile) }).token,
        csr: createCsrFromKey(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, name),
      });
      expect(p.status).toBe(202);
      const id = p.json.requestId as string;
      const results = await Promise.all(
        (['approve', 'reject', 'approve', 'reject'] as const).map(async (verb) => ({
          verb,
          ...(await post(
            `/v1/requests/${verb}`,
            verb === 'reject' ? { names: [id], reason: 'race' } : { names: [id] },
            true,
          )),
        })),
      );
      const winners = results.filter((r) => r.status === 200);
      expect(winners, JSON.stringify(results)).toHaveLength(1);
      const holds = winners[0]!.verb === 'approve' ? 'approved' : 'rejected';
      for (const loser of results.filter((r) => r.status !== 200))
        expect(loser.json.error).toMatchObject({
          code: 'REQUEST_ALREADY_DECIDED',
          requestId: id,
          decision: holds,
        });
      decided.push({ id, name, holds });
    }
    const r = await request(`https://127.0.0.1:${port}/v1/audit?limit=10000`, {
      headers: { authorization: `Bearer ${API_KEY}` },
      dispatcher: agent,
    });
    const { entries } = (await r.body.json()) as { entries: AuditEntry[] };
    expect(verifyAuditTrail(entries, [], undefined).entries).toBe(entries.length);
    const e = await request(`https://127.0.0.1:${port}/v1/enrolled`, {
      headers: { authorization: `Bearer ${API_KEY}` },
      dispatcher: agent,
    });
    const { enrolled } = (await e.body.json()) as { enrolled: { name: string }[] };
    for (const { id, name, holds } of decided) {
      const decisions = entries.filter(
        (e) =>
          (e.action === 'request.approved' || e.action === 'request.rejected') && e.detail.requestId === id,
      );
      expect(decisions.map((e) => e.action)).toEqual([`request.${holds}`]);
      expect(enrolled.filter((e) => e.name === name)).toHaveLength(holds === 'approved' ? 1 : 0);
    }
  });

  it('serves the workers’ metrics together from the primary, lint-clean, and readiness of all workers', async () => {
    const text = await (await fetch(`${metricsUrl}/metrics`)).text();
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(`${lint.stdout}${lint.stderr}`).toBe('');
    const value = (series: string) => Number(new RegExp(`^${series} (\\S+)$`, 'm').exec(text)?.[1]);
    // Counted by whichever worker answered, summed: the 41 certificates of the first test.
    expect(
      value('pollen_enrollments_total\\{outcome="issued",component="cert-service"\\}'),
    ).toBeGreaterThanOrEqual(41);
    expect(value('pollen_enrollment_token_uses_total\\{result="refused",component="cert-service"\\}')).toBe(
      49,
    );
    // Read from the shared store by each worker: the same value, not a sum.
    expect(value('pollen_enrollment_pending_requests\\{component="cert-service"\\}')).toBe(0);
    const ready = await fetch(`${metricsUrl}/readyz`);
    expect(await ready.json()).toEqual({ status: 'ready', checks: { workers: 'ok' } });
  });
});
