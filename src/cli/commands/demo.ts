import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { runEnrollmentDemo } from '../../demo/auto-scale.js';
import { PollenError } from '../../errors.js';
import { action } from '../command.js';
import { bold, dim, ok } from '../output.js';

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('run the auto-scale enrollment workflow end to end on this machine, narrated')
    .option(
      '--sites <n>',
      'hospital sites that enroll automatically (one partner site waits for approval)',
      '3',
    )
    .option(
      '-w, --workspace <dir>',
      'where to put the CA, service and kits (default: a new temporary folder)',
    )
    .option('--keep', 'leave the Certificate Service running (a temporary workspace is otherwise removed)')
    .addHelpText(
      'after',
      `
What happens, each step a real \`pollen\` process:
  cert init → cert api-key → policy check → cert-service → token batch (via the service)
  → package (kits with tokens, signed) → every site's start (pins the root, makes its key,
  sends a CSR) → a pending partner approved from the CLI → a replayed token refused
  → enrollment enrolled, and every certificate checked against the root.`,
    )
    .action(
      action<{ sites: string; workspace?: string; keep?: boolean }>(async (o, out) => {
        const sites = Number(o.sites);
        if (!Number.isInteger(sites) || sites < 1 || sites > 50)
          throw new PollenError('INVALID_ARGUMENT', '--sites must be a whole number from 1 to 50');
        const workspace = o.workspace ? resolve(o.workspace) : mkdtempSync(join(tmpdir(), 'pollen-demo-'));
        const say = (s: string) => (out.json ? out.progress(s) : process.stdout.write(`${s}\n`));
        say(`${bold('Pollen')} auto-scale enrollment demo — workspace ${workspace}`);
        const summary = await runEnrollmentDemo(
          { workspace, sites, keep: Boolean(o.keep) },
          {
            step: (n, title, command) =>
              say(`\n${bold(`${n}.`)} ${title}${command ? `\n   ${dim(`$ ${command}`)}` : ''}`),
            line: (text) => say(`   ${text}`),
          },
        );
        // A temporary workspace holds CA keys: remove it unless asked to keep it.
        const removed = !o.keep && !o.workspace;
        if (removed) rmSync(workspace, { recursive: true, force: true });
        out.result({ ...summary, workspaceRemoved: removed }, (s) => [
          '',
          `${ok('✓')} ${s.enrolled.length} sites enrolled (${s.enrolled.filter((e) => e.verified).length} chains verified), ` +
            `${s.pendingApproved.length} after approval, ${s.refused.length} intruder refused, in ${s.seconds}s`,
          s.keptRunning
            ? `The Certificate Service keeps running at ${s.certServiceUrl} (pid ${s.certServicePid}); workspace ${s.workspace}`
            : dim(
                s.workspaceRemoved
                  ? 'Everything was shut down and the temporary workspace removed (keep it with --keep or -w DIR).'
                  : `Everything was shut down. Files are in ${s.workspace}`,
              ),
        ]);
      }),
    );
}
