import { connect, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { fetch } from 'undici';
import { PollenError } from '../../errors.js';
import { type LoadedPolicy, notificationTargets } from '../policy.js';
import { checkPoliciesForService } from '../policy-service.js';

/** What admins hear about: a request waits, or a decision was made. */
export interface EnrollmentEvent {
  event: 'request.pending' | 'request.approved' | 'request.rejected';
  project: string;
  requestId: string;
  name: string;
  type: string;
  sourceIp?: string | null;
  rule?: string | null;
  actor?: string;
  reason?: string;
  at: string;
}

export interface NotifierConfig {
  /** `smtp://host:port` of a relay that accepts mail from this host (no authentication). */
  smtpUrl?: string;
  smtpFrom?: string;
  /** Recipients when a policy enables e-mail without listing any. */
  adminEmail?: string;
  logger?: Logger | false;
  timeoutMs?: number;
}

/**
 * Delivers a policy's notifications (webhook POST of the event as JSON, or e-mail through an SMTP
 * relay). Delivery never delays or fails an enrollment: it runs in the background with a bounded
 * number of retries, and failures are logged.
 */
export class Notifier {
  private readonly inflight = new Set<Promise<void>>();

  constructor(private readonly c: NotifierConfig = {}) {}

  /** Refuse, at start-up, a policy whose channels this service cannot deliver to (policy-service.ts). */
  check(policies: LoadedPolicy[]): void {
    checkPoliciesForService(policies, this.c);
  }

  notify(policy: LoadedPolicy, e: EnrollmentEvent): void {
    const t = notificationTargets(policy.policy);
    const jobs: (() => Promise<void>)[] = [];
    if (t.webhook) jobs.push(() => this.webhook(t.webhook!.url, e));
    if (t.email) jobs.push(() => this.email(t.email!.to.length ? t.email!.to : [this.c.adminEmail!], e));
    for (const job of jobs) {
      const p = this.withRetries(job, e).finally(() => this.inflight.delete(p));
      this.inflight.add(p);
    }
  }

  /** Wait for deliveries in flight (each is bounded by its timeout and retries). */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.inflight]);
  }

  private async withRetries(job: () => Promise<void>, e: EnrollmentEvent): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await job();
        return;
      } catch (err) {
        if (attempt >= 3) {
          if (this.c.logger)
            this.c.logger.warn({ err, event: e.event, requestId: e.requestId }, 'notification failed');
          return;
        }
        await new Promise((r) => setTimeout(r, 200 * 4 ** attempt));
      }
    }
  }

  private async webhook(url: string, e: EnrollmentEvent): Promise<void> {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'pollen-cert-service' },
      body: JSON.stringify(e),
      // A redirect could point the service at an address the policy could not name.
      redirect: 'manual',
      signal: AbortSignal.timeout(this.c.timeoutMs ?? 5000),
    });
    await res.body?.cancel();
    if (res.status >= 300) throw new Error(`webhook answered ${res.status}`);
  }

  private async email(to: string[], e: EnrollmentEvent): Promise<void> {
    const subject =
      e.event === 'request.pending'
        ? `[${e.project}] ${e.type} ${e.name} waits for approval`
        : `[${e.project}] ${e.type} ${e.name} ${e.event === 'request.approved' ? 'approved' : 'rejected'}`;
    const lines = [
      `Project:  ${e.project}`,
      `Request:  ${e.requestId}`,
      `Name:     ${e.name} (${e.type})`,
      ...(e.sourceIp ? [`From:     ${e.sourceIp}`] : []),
      ...(e.rule ? [`Rule:     ${e.rule}`] : []),
      ...(e.actor ? [`By:       ${e.actor}`] : []),
      ...(e.reason ? [`Reason:   ${e.reason}`] : []),
      `At:       ${e.at}`,
      '',
      e.event === 'request.pending' ? `Approve with: pollen enrollment approve ${e.requestId}` : '',
    ];
    await sendMail(
      this.c.smtpUrl!,
      this.c.smtpFrom ?? 'pollen@localhost',
      to,
      subject,
      lines.join('\r\n'),
      this.c.timeoutMs ?? 5000,
    );
  }
}

/** A minimal SMTP client (RFC 5321) for a local relay: EHLO, MAIL, RCPT, DATA, QUIT. */
export async function sendMail(
  smtpUrl: string,
  from: string,
  to: string[],
  subject: string,
  body: string,
  timeoutMs: number,
) {
  const u = new URL(smtpUrl);
  if (u.protocol !== 'smtp:')
    throw new PollenError('INVALID_ARGUMENT', `--smtp-url must be smtp://HOST:PORT (got ${u.protocol})`);
  const socket: Socket = connect({ host: u.hostname, port: Number(u.port || 25) });
  socket.setTimeout(timeoutMs, () => socket.destroy(new Error('SMTP timeout')));
  let buffer = '';
  const waiters: ((line: string) => void)[] = [];
  socket.on('data', (d) => {
    buffer += d.toString('utf8');
    // A reply is complete at a line "NNN text" (a dash after the code means more lines follow).
    for (let m = /^(\d{3}) .*\r?\n/m.exec(buffer); m; m = /^(\d{3}) .*\r?\n/m.exec(buffer)) {
      buffer = buffer.slice(m.index + m[0].length);
      waiters.shift()?.(m[0]);
    }
  });
  const failed = new Promise<never>((_, rej) => {
    socket.on('error', rej);
    socket.on('close', () => rej(new Error('SMTP connection closed')));
  });
  const reply = () => Promise.race([new Promise<string>((r) => waiters.push(r)), failed]);
  const expectCode = async (ok: string) => {
    const line = await reply();
    if (!line.startsWith(ok)) throw new Error(`SMTP: ${line.trim()}`);
  };
  const send = async (cmd: string, ok: string) => {
    const p = expectCode(ok);
    socket.write(`${cmd}\r\n`);
    await p;
  };
  try {
    await expectCode('220');
    await send('EHLO pollen', '250');
    await send(`MAIL FROM:<${from}>`, '250');
    for (const r of to) await send(`RCPT TO:<${r}>`, '25');
    await send('DATA', '354');
    const headers = [
      `From: ${from}`,
      `To: ${to.join(', ')}`,
      `Subject: ${subject.replace(/[\r\n]/g, ' ')}`,
      `Date: ${new Date().toUTCString()}`,
      'Content-Type: text/plain; charset=utf-8',
    ];
    const data = `${headers.join('\r\n')}\r\n\r\n${body.replace(/^\./gm, '..')}\r\n.`;
    await send(data, '250');
    socket.write('QUIT\r\n');
  } finally {
    socket.end();
  }
}
