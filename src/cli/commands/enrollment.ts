import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Table from 'cli-table3';
import { type Command, Option } from 'commander';
import { CertServiceClient, type DecisionResult } from '../../enrollment/cert-service-client.js';
import { type AuditEntry, verifyAuditChain } from '../../enrollment/service/audit.js';
import { PollenError } from '../../errors.js';
import { action } from '../command.js';
import { apiKeyOption, caCertOption, caOption, certServiceOption } from '../env-options.js';
import { bold, dim } from '../output.js';

interface ServiceFlags {
  certService?: string;
  apiKey?: string;
  caCert?: string;
  ca?: string;
}

const TYPES = ['client', 'server', 'relay', 'admin', 'user'];
const collect = (v: string, prev: string[] = []) => [...prev, v];

/** A client for the admin API from flags or the environment; the root to trust from --ca-cert or the CA folder. */
export function adminClient(f: ServiceFlags): CertServiceClient {
  const url = f.certService;
  if (!url)
    throw new PollenError('USAGE', 'The Certificate Service URL is required', {
      hint: 'Pass --cert-service https://HOST:8443 or set POLLEN_CERT_SERVICE_URL.',
    });
  const apiKey = f.apiKey;
  if (!apiKey)
    throw new PollenError('API_KEY_REQUIRED', 'An API key is required', {
      hint: 'Pass --api-key KEY or set POLLEN_API_KEY (made with `pollen cert api-key`).',
    });
  const caPath = f.caCert ?? (f.ca ? join(f.ca, 'rootCA.pem') : undefined);
  let caCert: string | undefined;
  if (caPath) {
    try {
      caCert = readFileSync(caPath, 'utf8');
    } catch {
      throw new PollenError('FILE_NOT_FOUND', `Cannot read the root CA to trust: ${caPath}`, {
        hint: 'Give the project rootCA.pem with --ca-cert FILE (or POLLEN_CA_CERT).',
      });
    }
  }
  return new CertServiceClient({ url, apiKey: apiKey.trim(), caCert });
}

function serviceOptions(cmd: Command): Command {
  return cmd
    .addOption(certServiceOption())
    .addOption(apiKeyOption())
    .addOption(caCertOption())
    .addOption(caOption('CA folder whose rootCA.pem to trust'));
}

const typeOption = () => new Option('--type <type>', 'only this participant type').choices(TYPES);

async function withClient<T>(f: ServiceFlags, fn: (c: CertServiceClient) => Promise<T>): Promise<T> {
  const client = adminClient(f);
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

/** Requests another admin decided first: they keep that decision, and the admin is told whose. */
function alreadyDecidedLines(d: DecisionResult): string[] {
  return d.alreadyDecided.map(
    (r) =>
      `${dim('already')} ${r.decision} ${r.name} ${dim(`(${r.requestId}${r.decidedBy ? `, by ${r.decidedBy}` : ''})`)}`,
  );
}

function table(head: string[], rows: (string | null)[][]): string {
  const t = new Table({ head, style: { head: [], border: [] } });
  for (const r of rows) t.push(r.map((c) => c ?? ''));
  return t.toString();
}

export function registerEnrollment(program: Command): void {
  const enr = program
    .command('enrollment')
    .description('manage enrollment requests and enrolled participants on the Certificate Service')
    .addHelpText(
      'after',
      `
All subcommands talk to the Certificate Service's admin API:
  export POLLEN_CERT_SERVICE_URL=https://certs.example.com:8443
  export POLLEN_API_KEY=$(cat api_key.txt)
  export POLLEN_CA_CERT=./ca/rootCA.pem`,
    );

  serviceOptions(enr.command('list'))
    .description('list enrollment requests (pending by default)')
    .addOption(
      new Option('--status <status>', 'which requests')
        .choices(['pending', 'approved', 'rejected', 'all'])
        .default('pending'),
    )
    .addOption(typeOption())
    .action(
      action<ServiceFlags & { status: string; type?: string }>(async (f, out) => {
        let requests = await withClient(f, (c) => c.listRequests(f.status));
        if (f.type) requests = requests.filter((r) => r.type === (f.type === 'user' ? 'admin' : f.type));
        out.result({ requests }, (d) =>
          d.requests.length === 0
            ? [`No ${f.status === 'all' ? '' : `${f.status} `}requests.`]
            : [
                table(
                  ['request', 'name', 'type', 'role', 'source ip', 'status', 'rule', 'created'],
                  d.requests.map((r) => [
                    r.id,
                    r.name,
                    r.type,
                    r.role,
                    r.sourceIp,
                    r.status,
                    r.rule,
                    r.createdAt,
                  ]),
                ),
                f.status === 'pending'
                  ? dim('Approve with: pollen enrollment approve NAME (or --pattern "site-*")')
                  : '',
              ],
        );
      }),
    );

  serviceOptions(enr.command('approve'))
    .description('approve pending requests by name, request id or --pattern')
    .argument('[names...]', 'site names, user e-mails or request ids')
    .option('--pattern <glob>', 'approve every pending request whose name matches, e.g. "hospital-*"')
    .addOption(typeOption())
    .addHelpText(
      'after',
      '\nExamples:\n  pollen enrollment approve hospital-1 --type client\n  pollen enrollment approve --pattern "hospital-*" --type client',
    )
    .action(
      action<ServiceFlags & { pattern?: string; type?: string }>(async (f, out, names) => {
        if (names.length === 0 && !f.pattern)
          throw new PollenError('USAGE', 'Say what to approve: names, request ids or --pattern GLOB');
        const result = await withClient(f, (c) =>
          c.approve({ names: names.length ? names : undefined, pattern: f.pattern, type: f.type as never }),
        );
        out.result(result, (d) => [
          ...(d.approved.length === 0 && d.alreadyDecided.length === 0
            ? ['Nothing matched: no pending request was approved.']
            : d.approved.map((a) => `${bold('approved')} ${a.type} ${a.name} ${dim(`(${a.id})`)}`)),
          ...alreadyDecidedLines(d),
        ]);
      }),
    );

  serviceOptions(enr.command('reject'))
    .description('reject pending requests with a reason the site will see')
    .argument('[names...]', 'site names, user e-mails or request ids')
    .option('--pattern <glob>', 'reject every pending request whose name matches, e.g. "test-*"')
    .requiredOption('--reason <text>', 'why (shown to the site)')
    .addOption(typeOption())
    .addHelpText(
      'after',
      '\nExamples:\n  pollen enrollment reject bad-site --type client --reason "Not authorized"\n  pollen enrollment reject --pattern "test-*" --reason "Test sites are not admitted"',
    )
    .action(
      action<ServiceFlags & { reason: string; pattern?: string; type?: string }>(async (f, out, names) => {
        if (names.length === 0 && !f.pattern)
          throw new PollenError('USAGE', 'Say what to reject: names, request ids or --pattern GLOB');
        const result = await withClient(f, (c) =>
          c.reject({
            names: names.length ? names : undefined,
            pattern: f.pattern,
            reason: f.reason,
            type: f.type as never,
          }),
        );
        out.result(result, (d) => [
          ...(d.rejected.length === 0 && d.alreadyDecided.length === 0
            ? ['Nothing matched: no pending request was rejected.']
            : d.rejected.map((r) => `${bold('rejected')} ${r.type} ${r.name} ${dim(`(${r.id})`)}`)),
          ...alreadyDecidedLines(d),
        ]);
      }),
    );

  serviceOptions(enr.command('enrolled'))
    .description('list enrolled participants and their certificates')
    .addOption(typeOption())
    .option('--all', 'include revoked and expired certificates')
    .action(
      action<ServiceFlags & { type?: string; all?: boolean }>(async (f, out) => {
        let enrolled = await withClient(f, (c) => c.enrolled(f.type as never));
        const now = Date.now();
        if (!f.all) enrolled = enrolled.filter((e) => !e.revoked && Date.parse(e.notAfter) > now);
        out.result({ enrolled }, (d) =>
          d.enrolled.length === 0
            ? ['Nobody is enrolled yet.']
            : [
                table(
                  ['name', 'type', 'role', 'serial', 'expires', 'approved by', 'revoked'],
                  d.enrolled.map((e) => [
                    e.name,
                    e.type,
                    e.role,
                    e.serial,
                    e.notAfter,
                    e.approvedBy,
                    e.revoked ? 'yes' : '',
                  ]),
                ),
              ],
        );
      }),
    );

  serviceOptions(enr.command('revoke'))
    .description('revoke certificates by name or serial (they go on the CRL)')
    .argument('[names...]', 'participant names (all their valid certificates)')
    .option('--serial <hex>', 'a certificate serial (repeatable)', collect, [])
    .option('--reason <text>', 'recorded with the revocation', 'unspecified')
    .action(
      action<ServiceFlags & { serial: string[]; reason: string }>(async (f, out, names) => {
        if (names.length === 0 && f.serial.length === 0)
          throw new PollenError('USAGE', 'Say what to revoke: names or --serial HEX');
        const revoked = await withClient(f, (c) =>
          c.revoke({
            names: names.length ? names : undefined,
            serials: f.serial.length ? f.serial : undefined,
            reason: f.reason,
          }),
        );
        out.result({ revoked }, (d) =>
          d.revoked.map((r) => `${bold('revoked')} ${r.name} serial ${r.serial}`),
        );
      }),
    );

  serviceOptions(enr.command('audit'))
    .description('show the hash-chained audit log of the Certificate Service, and check the chain')
    .option('--after <seq>', 'only entries after this sequence number', '0')
    .option('--verify', 'fetch the whole log and check every hash from the first entry')
    .option('--expect-head <seq:hash>', 'fail unless this earlier recorded head is still part of the chain')
    .addHelpText(
      'after',
      `
Every issuance, approval, rejection, renewal, revocation and token batch is appended, in the same
transaction, as an entry whose hash covers the one before it. Keep the head printed by --verify
somewhere else; later, --expect-head SEQ:HASH proves nothing before it was rewritten.`,
    )
    .action(
      action<ServiceFlags & { after: string; verify?: boolean; expectHead?: string }>(async (f, out) => {
        const after = f.verify || f.expectHead ? 0 : Number(f.after);
        if (!Number.isInteger(after) || after < 0)
          throw new PollenError('USAGE', '--after takes a sequence number');
        const entries: AuditEntry[] = await withClient(f, async (c) => {
          const all: AuditEntry[] = [];
          // bounded: at most 1,000 pages of 1,000 entries
          for (let page = 0; page < 1000; page++) {
            const batch = await c.audit(all.at(-1)?.seq ?? after, 1000);
            all.push(...(batch as AuditEntry[]));
            if (batch.length < 1000 || !(f.verify || f.expectHead)) break;
          }
          return all;
        });
        const check = f.verify || f.expectHead ? verifyAuditChain(entries) : undefined;
        if (check && !check.ok)
          throw new PollenError('AUDIT_BROKEN', `The audit chain is broken at entry ${check.brokenAt}`);
        if (f.expectHead) {
          const [seq, hash] = f.expectHead.split(':');
          const e = entries.find((x) => x.seq === Number(seq));
          if (!e || e.hash !== hash)
            throw new PollenError('AUDIT_BROKEN', `Entry ${seq} no longer has the hash recorded earlier`);
        }
        out.result({ entries, ...(check ? { verified: check.ok, head: check.head } : {}) }, (d) => [
          ...d.entries.map(
            (e) =>
              `${String(e.seq).padStart(6)}  ${e.at}  ${e.action.padEnd(20)} ${e.subject}  ${dim(`by ${e.actor}`)}`,
          ),
          ...(check
            ? [
                '',
                `chain verified: ${check.count} entries, head ${check.head ? `${check.head.seq}:${check.head.hash}` : '(empty)'}`,
              ]
            : []),
        ]);
      }),
    );
}
