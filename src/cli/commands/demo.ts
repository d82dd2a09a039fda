import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { runEnrollmentDemo } from '../../demo/auto-scale.js';
import { PollenError } from '../../errors.js';
import { action } from '../command.js';
import { bold, dim, ok } from '../output.js';

export function registerDemo(program: Command): void {
  const demo = program
    .command('demo')
    .description(
      'run a whole secure federation on this machine: CA, enrollment, SuperLink, SuperNodes, MNIST',
    )
    .option('--sites <n>', 'sites, each with its own SuperNode and data partition', '3')
    .option('--rounds <n>', 'federated rounds of the MNIST app', '3')
    .option('--partitioning <kind>', 'iid, or non-iid (each site sees mostly some digits)', 'iid')
    .option('-w, --workspace <dir>', 'where to put everything (default: a new temporary folder)')
    .option('--keep', 'leave the federation running at the end (a temporary workspace is otherwise removed)')
    .addHelpText(
      'after',
      `
What happens, each step a real \`pollen\` process:
  cert init → cert-service (policy: site-* on this machine approved) → superlink (mutual TLS,
  --enable-supernode-auth, CRL from the service) → admin certificate + federation add
  → token batch + package (signed startup kits) → node keys (ssh-keygen) + supernode register
  → every site's start (enrolls, then runs its SuperNode) → run examples/mnist with a live
  per-round display → summary → everything stopped.

Examples:
  npm run demo                              # same as: pollen demo
  pollen demo --sites 5 --rounds 5 --partitioning non-iid
  pollen demo -w ./demo --keep              # then: POLLEN_CONFIG=./demo/admin/config.toml pollen list
  pollen demo enrollment                    # only the enrollment walkthrough`,
    )
    .action(
      action<{ sites: string; rounds: string; partitioning: string; workspace?: string; keep?: boolean }>(
        async (o, out) => {
          const sites = Number(o.sites);
          const rounds = Number(o.rounds);
          if (!Number.isInteger(sites) || sites < 1 || sites > 20)
            throw new PollenError('INVALID_ARGUMENT', '--sites must be a whole number from 1 to 20');
          if (!Number.isInteger(rounds) || rounds < 1 || rounds > 100)
            throw new PollenError('INVALID_ARGUMENT', '--rounds must be a whole number from 1 to 100');
          if (o.partitioning !== 'iid' && o.partitioning !== 'non-iid')
            throw new PollenError('INVALID_ARGUMENT', '--partitioning is iid or non-iid');
          const { runFederationDemo } = await import('../../demo/federation.js');
          const workspace = o.workspace ? resolve(o.workspace) : mkdtempSync(join(tmpdir(), 'pollen-demo-'));
          const say = (s: string) => (out.json ? out.progress(s) : out.line(s));
          say(`${bold('Pollen')} secure federation demo — workspace ${workspace}`);
          let summary: Awaited<ReturnType<typeof runFederationDemo>>;
          try {
            summary = await runFederationDemo(
              { workspace, sites, rounds, partitioning: o.partitioning, keep: Boolean(o.keep) },
              {
                step: (n, title, command) =>
                  say(`\n${bold(`${n}.`)} ${title}${command ? `\n   ${dim(`$ ${command}`)}` : ''}`),
                line: (text) => say(`   ${text}`),
                round: (r) =>
                  say(
                    `   round ${String(r.round).padStart(2)}  ${Object.entries(r.metrics)
                      .filter(([k]) => /accuracy|loss/.test(k))
                      .map(([k, v]) => `${k} ${v.toFixed(4)}`)
                      .join('  ')}  ${dim(`${r.nodes} nodes, ${(r.bytes / 1e6).toFixed(1)} MB moved`)}`,
                  ),
              },
            );
          } catch (e) {
            if (!o.workspace) say(dim(`   files kept for inspection in ${workspace}`));
            throw e;
          }
          // A temporary workspace holds CA keys: remove it unless asked to keep it.
          const removed = !o.keep && !o.workspace;
          if (removed) rmSync(workspace, { recursive: true, force: true });
          out.result({ ...summary, workspaceRemoved: removed }, (s) => [
            '',
            `${ok('✓')} ${s.sites.length} sites trained MNIST for ${s.rounds.length} rounds: accuracy ${
              s.accuracy === null ? 'n/a' : `${(s.accuracy * 100).toFixed(1)}%`
            } on held-out digits, ${(s.bytesMoved / 1e6).toFixed(1)} MB of model updates moved, training ${s.trainingSeconds}s, ${s.seconds}s in all`,
            s.keptRunning
              ? `Still running (SuperLink ${s.superlink?.control}); try: POLLEN_CONFIG=${s.federationConfig} pollen list\n` +
                `Stop it all with: kill ${s.pids?.join(' ')}`
              : dim(
                  s.workspaceRemoved
                    ? 'Everything was shut down and the temporary workspace removed (keep it with --keep or -w DIR).'
                    : `Everything was shut down. Files are in ${s.workspace}`,
                ),
          ]);
        },
      ),
    );

  demo
    .command('enrollment')
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
        const say = (s: string) => (out.json ? out.progress(s) : out.line(s));
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
