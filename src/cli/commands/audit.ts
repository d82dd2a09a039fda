import type { Command } from 'commander';
import type { AuditListOptions } from '../audit/list.js';
import type { AuditSourceOptions } from '../audit/source.js';
import type { AuditVerifyOptions } from '../audit/verify.js';
import { action, lazy } from '../command.js';
import { apiKeyOption, caCertOption, caOption } from '../env-options.js';

const auditCheckpoint = lazy(() => import('../audit/checkpoint.js'), 'auditCheckpoint');
const auditList = lazy(() => import('../audit/list.js'), 'auditList');
const auditVerify = lazy(() => import('../audit/verify.js'), 'auditVerify');

/** Which trail: a SuperLink's connection entry, or a Certificate Service. */
function sourceOptions(cmd: Command): Command {
  return (
    cmd
      // Not read from POLLEN_CERT_SERVICE_URL: a SuperLink's operator often sets that (for the CRL),
      // and the trail read must be the one named on the command line.
      .option('--cert-service <url>', 'read this Certificate Service instead of a SuperLink')
      .addOption(apiKeyOption())
      .addOption(caCertOption())
      .addOption(caOption('CA folder whose rootCA.pem to trust'))
  );
}

export function registerAudit(program: Command): void {
  const audit = program
    .command('audit')
    .description('read and verify the tamper-evident audit trail of a SuperLink or Certificate Service')
    .addHelpText(
      'after',
      `
Every state-changing call and every refused authorisation is an entry whose hash covers the one
before it; the head is signed (a checkpoint) every few minutes and when the server stops, with the
server's TLS key. verify checks all of it here, against the project root. Without --cert-service
the SuperLink of the connection (--superlink NAME, or the default one) is read. See docs/identity.md, "The audit trail".`,
    );

  sourceOptions(audit.command('list'))
    .description('list audit entries, oldest first')
    .option('--since <time>', 'entries at or after a time (ISO 8601) or a duration back (24h, 7d)')
    .option('--actor <subject>', 'entries of one actor (subject or name)')
    .option('--federation <name>', 'entries of calls that named this federation')
    .option('--limit <n>', 'at most this many entries', '100')
    .addHelpText(
      'after',
      `
Examples:
  pollen audit list --since 24h
  pollen audit list --actor alice@example.org --federation cancer-study --json
  pollen audit list --cert-service https://ca.example.org:8443 --ca-cert rootCA.pem`,
    )
    .action(action<AuditListOptions>(auditList));

  sourceOptions(audit.command('verify'))
    .description('check the whole chain and its signed checkpoints against the project root')
    .option('--checkpoint <file>', 'also a checkpoint saved earlier (pollen audit checkpoint > FILE)')
    .addHelpText(
      'after',
      `
Examples:
  pollen audit verify
  pollen audit verify --checkpoint superlink-2026-12-01.json

Finds a changed, removed or reordered entry (AUDIT_CHAIN_BROKEN), a cut tail (AUDIT_TRUNCATED), a
chain recomputed after a change (AUDIT_CHECKPOINT_MISMATCH) and a checkpoint not signed by the
project's server (AUDIT_CHECKPOINT_SIGNATURE). A checkpoint you saved finds a rollback of the
whole store too, checkpoints included.`,
    )
    .action(action<AuditVerifyOptions>(auditVerify));

  sourceOptions(audit.command('checkpoint'))
    .description('print the newest signed checkpoint, to keep elsewhere')
    .addHelpText(
      'after',
      `
Examples:
  pollen audit checkpoint > superlink-$(date +%F).json`,
    )
    .action(action<AuditSourceOptions>(auditCheckpoint));
}
