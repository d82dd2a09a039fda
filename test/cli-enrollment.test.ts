import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LiveCertService, startLiveCertService, testPolicy } from './support/cert-service.js';
import { type CliResult, pollenAsync, pollenInProcess, tempDir } from './support/cli.js';

// `pollen enrollment …` as a real process against a real service.

const t = tempDir('pollen-cli-enr-');
const KEY = `pollen_${'x'.repeat(43)}`;
let cs: LiveCertService;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  cs = await startLiveCertService(t.dir, {
    name: 'CLI Enrollment',
    apiKey: KEY,
    policy: testPolicy('cli', ['{ name: "all-wait", match: {}, action: pending }']),
  });
  env = {
    POLLEN_CERT_SERVICE_URL: `https://localhost:${cs.svc.port}`,
    POLLEN_API_KEY: KEY,
    POLLEN_CA_CERT: join(cs.caDir, 'rootCA.pem'),
  };
  for (const name of ['site-a', 'site-c', 'test-1', 'test-2'])
    expect((await cs.enroll(name)).status).toBe(202);
  expect((await cs.enroll('site-b', 'Clinic Two')).status).toBe(202);
});
afterAll(async () => {
  await cs?.close();
  t.cleanup();
});

describe('pollen enrollment', () => {
  it('lists pending requests as a table and as JSON', async () => {
    const text = await pollenAsync(['enrollment', 'list'], { env }); // the built CLI, as a process
    expect(text.code, text.stderr).toBe(0);
    for (const n of ['site-a', 'site-b', 'site-c', 'test-1', 'test-2']) expect(text.stdout).toContain(n);
    const json = await pollenInProcess(['enrollment', 'list', '--json'], { env });
    expect(json.json<{ requests: { name: string; rule: string }[] }>().requests.map((r) => r.rule)).toEqual(
      Array(5).fill('all-wait'),
    );
  });

  it('rejects with a reason, approves the rest, and lists enrolled', async () => {
    const rej = await pollenInProcess(
      ['enrollment', 'reject', 'site-c', '--reason', 'Not authorized', '--json'],
      { env },
    );
    expect(rej.code, rej.stderr).toBe(0);
    expect(rej.json<{ rejected: { name: string }[] }>().rejected[0]!.name).toBe('site-c');
    const byPattern = await pollenInProcess(
      ['enrollment', 'reject', '--pattern', 'test-*', '--reason', 'Test sites are not admitted'],
      { env },
    );
    expect(byPattern.code, byPattern.stderr).toBe(0);
    expect(byPattern.stdout).toMatch(/rejected client test-1[\s\S]*rejected client test-2/);
    // a decided request keeps its decision; the second admin is told which one and by whom
    const again = await pollenInProcess(['enrollment', 'approve', 'site-c', '--json'], { env });
    expect(again.code).toBe(6);
    expect(again.json<{ error: Record<string, string> }>().error).toMatchObject({
      code: 'REQUEST_ALREADY_DECIDED',
      name: 'site-c',
      decision: 'rejected',
      decidedBy: expect.stringMatching(/^api-key:/),
    });
    const againText = await pollenInProcess(['enrollment', 'reject', 'test-1', '--reason', 'x'], { env });
    expect(againText.stderr).toMatch(/already rejected by api-key:/);
    const app = await pollenInProcess(
      ['enrollment', 'approve', '--pattern', 'site-*', '--type', 'client', '--json'],
      { env },
    );
    expect(
      app
        .json<{ approved: { name: string }[] }>()
        .approved.map((a) => a.name)
        .sort(),
    ).toEqual(['site-a', 'site-b']);
    const none = await pollenInProcess(['enrollment', 'list', '--json'], { env });
    expect(none.json<{ requests: unknown[] }>().requests).toEqual([]);
    const enrolled = await pollenInProcess(['enrollment', 'enrolled'], { env });
    expect(enrolled.stdout).toMatch(/site-a[\s\S]*site-b/);
    expect(enrolled.stdout).toContain('api-key:');
    // The organisation a certificate names, in the table and the document (null: none).
    expect(enrolled.stdout).toMatch(/organisation[\s\S]*site-b .*Clinic Two/);
    const enrolledJson = await pollenInProcess(['enrollment', 'enrolled', '--json'], { env });
    expect(
      enrolledJson
        .json<{ enrolled: { name: string; org: string | null }[] }>()
        .enrolled.map((e) => [e.name, e.org]),
    ).toEqual([
      ['site-a', null],
      ['site-b', 'Clinic Two'],
    ]);
  });

  it('rejects without a reason as FLARE does, and shows each reason in the list and the audit log', async () => {
    expect((await cs.enroll('site-d')).status).toBe(202);
    const rej = await pollenInProcess(['enrollment', 'reject', 'site-d', '--json'], { env });
    expect(rej.code, rej.stdout + rej.stderr).toBe(0);
    expect(rej.json<{ rejected: { name: string; reason: string }[] }>().rejected).toEqual([
      expect.objectContaining({ name: 'site-d', reason: 'rejected by an administrator' }),
    ]);
    const listed = await pollenInProcess(['enrollment', 'list', '--status', 'rejected', '--json'], { env });
    const reasons = Object.fromEntries(
      listed.json<{ requests: { name: string; reason: string }[] }>().requests.map((r) => [r.name, r.reason]),
    );
    expect(reasons).toMatchObject({ 'site-c': 'Not authorized', 'site-d': 'rejected by an administrator' });
    const text = await pollenInProcess(['enrollment', 'list', '--status', 'rejected'], { env });
    expect(text.stdout).toMatch(/site-c.*rejected.*api-key:.*Not authorized/);
    const audit = await pollenInProcess(['enrollment', 'audit'], { env });
    expect(audit.stdout).toMatch(/request\.rejected\s+site-c .*reason: Not authorized/);
  });

  it('keeps a hash-chained audit log that detects a rewritten entry', async () => {
    // The service signs its head (at intervals and on stop; here, now): verify checks it too.
    await cs.svc.service.audit.checkpoint();
    const anchored = await pollenInProcess(
      ['audit', 'verify', '--cert-service', env.POLLEN_CERT_SERVICE_URL!, '--json'],
      { env },
    );
    expect(anchored.code, anchored.stdout).toBe(0);
    expect(anchored.json<{ anchoredAt: number; head: { seq: number } }>()).toMatchObject({
      anchoredAt: anchored.json<{ head: { seq: number } }>().head.seq,
    });
    const ok = await pollenInProcess(['enrollment', 'audit', '--verify', '--json'], { env });
    expect(ok.code, ok.stderr).toBe(0);
    const check = ok.json<{ verified: boolean; head: { seq: number; hash: string } }>();
    expect(check.verified).toBe(true);
    expect(ok.stderr).toContain('pollen audit verify');
    const listed = await pollenInProcess(
      ['audit', 'list', '--cert-service', env.POLLEN_CERT_SERVICE_URL!, '--limit', '1000', '--json'],
      { env },
    );
    const log = listed.json<{ entries: { seq: number; action: string; target: string; actor: string }[] }>();
    const actions = log.entries.map((e) => `${e.action} ${e.target}`);
    expect(actions).toEqual(
      expect.arrayContaining([
        'request.pending site-a',
        'request.rejected site-c',
        'request.approved site-a',
        'request.approved site-b',
      ]),
    );
    expect(log.entries.find((e) => e.action === 'request.approved')!.actor).toMatch(/^api-key:/);
    // someone with write access to the store edits history: the chain no longer verifies
    const db = new Database(join(t.dir, 'ws', 'cert-service.db'));
    db.prepare(
      'UPDATE audit SET detail = \'{"requestId":"forged"}\' WHERE action = \'request.rejected\'',
    ).run();
    db.close();
    const broken = await pollenInProcess(['enrollment', 'audit', '--verify', '--json'], { env });
    expect(broken.code).toBe(6);
    expect(broken.json<{ error: { code: string } }>().error.code).toBe('AUDIT_CHAIN_BROKEN');
    // and an earlier recorded head is checked too
    const head = await pollenInProcess(
      ['enrollment', 'audit', '--expect-head', `${check.head.seq}:${'0'.repeat(64)}`, '--json'],
      { env },
    );
    expect(head.code).toBe(6);
  });

  it('says precisely what is wrong: missing request, wrong key, unreachable service, no URL', async () => {
    /** The command exits `exit` with the error `code` in its JSON answer. */
    const expectFailure = (r: CliResult, exit: number, code: string) => {
      expect(r.code, code).toBe(exit);
      expect(r.json<{ error: { code: string } }>().error.code).toBe(code);
    };
    /** `pollen enrollment list --json` with these variables changed. */
    const listWith = (changed: NodeJS.ProcessEnv) =>
      pollenInProcess(['enrollment', 'list', '--json'], { env: { ...env, ...changed } });

    const missing = await pollenInProcess(['enrollment', 'approve', 'nobody', '--json'], { env });
    expectFailure(missing, 4, 'REQUEST_NOT_FOUND');
    expectFailure(await listWith({ POLLEN_API_KEY: 'nope' }), 5, 'API_KEY_INVALID');
    expectFailure(await listWith({ POLLEN_CERT_SERVICE_URL: 'https://127.0.0.1:1' }), 7, 'UNAVAILABLE');
    expectFailure(await listWith({ POLLEN_CA_CERT: '/etc/ssl/certs/ca-certificates.crt' }), 5, 'TLS_FAILED');

    const noUrl = await pollenInProcess(['enrollment', 'list'], {
      env: { ...env, POLLEN_CERT_SERVICE_URL: '' },
    });
    expect(noUrl.code).toBe(2);
    expect(noUrl.stderr).toContain('POLLEN_CERT_SERVICE_URL');
  });
});
