import { writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCertService } from '../src/enrollment/service/server.js';
import { ExitCode, PollenError } from '../src/errors.js';
import { type LiveCertService, startLiveCertService, testPolicy } from './support/cert-service.js';
import { pollenInProcess, tempDir } from './support/cli.js';
import { SEED_CUSTOM_POLICY } from './support/fixtures.js';

// Policy notifications delivered for real: a webhook receiver and an SMTP relay on 127.0.0.1.

const t = tempDir('pollen-notify-');
const webhookEvents: Record<string, unknown>[] = [];
const mails: string[] = [];
let webhook: ReturnType<typeof createHttpServer>;
let smtp: Server;
let cs: LiveCertService;

function fakeSmtp(): Server {
  return createServer((sock) => {
    let data = false;
    let message = '';
    sock.write('220 test ESMTP\r\n');
    sock.on('data', (chunk) => {
      for (const line of chunk.toString().split('\r\n')) {
        if (data) {
          if (line === '.') {
            data = false;
            mails.push(message);
            sock.write('250 queued\r\n');
          } else message += `${line}\n`;
        } else if (/^EHLO/i.test(line)) sock.write('250-test\r\n250 OK\r\n');
        else if (/^(MAIL|RCPT)/i.test(line)) sock.write('250 OK\r\n');
        else if (/^DATA/i.test(line)) {
          data = true;
          sock.write('354 go on\r\n');
        } else if (/^QUIT/i.test(line)) sock.end('221 bye\r\n');
      }
    });
  });
}

const listen = (s: Server | ReturnType<typeof createHttpServer>) =>
  new Promise<number>((r) => s.listen(0, '127.0.0.1', () => r((s.address() as { port: number }).port)));

beforeAll(async () => {
  webhook = createHttpServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      webhookEvents.push(JSON.parse(body));
      res.end('ok');
    });
  });
  smtp = fakeSmtp();
  const [wPort, sPort] = [await listen(webhook), await listen(smtp)];
  cs = await startLiveCertService(t.dir, {
    name: 'Notify Test',
    apiKey: 'k'.repeat(40),
    policy: testPolicy(
      'notify-test',
      ['{ name: "everyone-waits", match: {}, action: pending }'],
      [
        'notifications:',
        '  enabled: true',
        '  channels:',
        '    email: { enabled: true, to: ["admins@example.org"] }',
        `    webhook: { enabled: true, url: "http://127.0.0.1:${wPort}/hook" }`,
      ],
    ),
    smtpUrl: `smtp://127.0.0.1:${sPort}`,
  });
});
afterAll(async () => {
  await cs?.close();
  webhook.close();
  smtp.close();
  t.cleanup();
});

describe('policy notifications', () => {
  it('tells admins about a pending request and its approval, by webhook and e-mail', async () => {
    const enrolled = await cs.enroll('clinic-1');
    expect(enrolled.status).toBe(202);
    await expect.poll(() => webhookEvents.length, { timeout: 5000 }).toBe(1);
    expect(webhookEvents[0]).toMatchObject({
      event: 'request.pending',
      name: 'clinic-1',
      project: 'notify-test',
      rule: 'everyone-waits',
    });
    await expect.poll(() => mails.length, { timeout: 5000 }).toBe(1);
    expect(mails[0]).toContain('Subject: [notify-test] client clinic-1 waits for approval');
    expect(mails[0]).toContain(`pollen enrollment approve ${enrolled.json.requestId}`);

    expect((await cs.post('/v1/requests/approve', { names: ['clinic-1'] }, true)).status).toBe(200);
    await expect.poll(() => webhookEvents.length, { timeout: 5000 }).toBe(2);
    expect(webhookEvents[1]).toMatchObject({
      event: 'request.approved',
      name: 'clinic-1',
      actor: expect.stringMatching(/^api-key:/),
    });
  });

  it('refuses at start exactly what `policy check` reports, and starts once the flags it names are given', async () => {
    const file = join(t.dir, 'seed-policy.yaml');
    writeFileSync(file, SEED_CUSTOM_POLICY);
    const start = (o: { smtpUrl?: string; adminEmail?: string } = {}) =>
      startCertService({
        caDir: cs.caDir,
        workspace: join(t.dir, 'ws2'),
        host: '127.0.0.1',
        port: 0,
        apiKeys: ['k'.repeat(40)],
        policyFile: file,
        logger: false,
        ...o,
      });
    const refused = await start().catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(PollenError);
    const check = await pollenInProcess(['policy', 'check', file, '--json'], { clean: true });
    expect(check.code).toBe(ExitCode.INVALID_INPUT);
    expect(check.json()['error']).toEqual((refused as PollenError).toJSON());
    expect((refused as PollenError).message).toMatch(/--admin-email[\s\S]*--smtp-url/);

    const settings = { smtpUrl: 'smtp://127.0.0.1:25', adminEmail: 'fl-admins@example.org' };
    const flags = ['--smtp-url', settings.smtpUrl, '--admin-email', settings.adminEmail];
    expect((await pollenInProcess(['policy', 'check', file, ...flags], { clean: true })).code).toBe(0);
    const started = await start(settings);
    await started.close();
  });
});
