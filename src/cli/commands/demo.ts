import type { Command } from 'commander';
import { action, lazy } from '../command.js';
import type { DemoEnrollmentOptions } from '../demo/enrollment.js';
import type { DemoFederationOptions } from '../demo/federation.js';
import type { DemoProviderOptions } from '../demo/oidc-provider.js';

const demoEnrollment = lazy(() => import('../demo/enrollment.js'), 'demoEnrollment');
const demoFederation = lazy(() => import('../demo/federation.js'), 'demoFederation');
const demoOidcProvider = lazy(() => import('../demo/oidc-provider.js'), 'demoOidcProvider');

export function registerDemo(program: Command): void {
  const demo = program
    .command('demo')
    .description(
      'run a whole secure federation on this machine: CA, enrollment, SuperLink, SuperNodes, MNIST',
    )
    .option(
      '--app <name>',
      'the app trained: mnist (TypeScript, tfjs) or pytorch-mnist (Python, PyTorch)',
      'mnist',
    )
    .option(
      '--python <path>',
      'with --app pytorch-mnist: the interpreter (default: the first of POLLEN_PYTHON, python3, /usr/bin/python3 with torch and numpy)',
    )
    .option('--sites <n>', 'sites, each with its own SuperNode and data partition', '3')
    .option('--rounds <n>', 'federated rounds of the MNIST app', '3')
    .option('--partitioning <kind>', 'iid, or non-iid (each site sees mostly some digits)', 'iid')
    .option('-w, --workspace <dir>', 'where to put everything (default: a new temporary folder)')
    .option('--keep', 'leave the federation running at the end (a temporary workspace is otherwise removed)')
    .option(
      '--oidc',
      'people log in: an embedded OpenID Provider; a researcher invited into the federation demo-study logs in and starts the run',
    )
    .option('--access-token-ttl <seconds>', 'with --oidc: how long each access token lasts', '600')
    .addHelpText(
      'after',
      `
What happens, each step a real \`pollen\` process:
  cert init → cert-service (policy: site-* on this machine approved) → superlink (mutual TLS,
  --enable-supernode-auth, CRL from the service) → admin certificate + config superlink add
  → token batch + package (signed startup kits) → node keys (ssh-keygen) + supernode register
  → every site's start (enrolls, then runs its SuperNode) → run examples/mnist (or, with
  --app pytorch-mnist, examples/pytorch-mnist with the Python interpreter it names) with a live
  per-round display → audit verify (the trail, checked against the project root) → summary →
  everything stopped. With --oidc: an embedded OpenID Provider whose tokens the SuperLink accepts;
  the admin creates the federation demo-study (federation create, add-node for each site) and
  invites a researcher by her verified e-mail as lead (federation invite); she has no kit and no
  role of her own: she logs in (pollen login, root fingerprint; the demo signs in for her),
  accepts (federation accept) and starts the run in demo-study under her own name. The summary
  names who started the run and that the audit trail verified.

Examples:
  npm run demo                              # same as: pollen demo
  pollen demo --sites 5 --rounds 5 --partitioning non-iid
  pollen demo --app pytorch-mnist           # the PyTorch example: Python ClientApps and ServerApp
  pollen demo -w ./demo --keep              # then: POLLEN_CONFIG=./demo/admin/config.toml pollen list
  pollen demo --oidc --sites 2 --rounds 2   # people log in instead of holding certificates
  pollen demo --oidc -w ./demo --keep       # then: POLLEN_CONFIG=./demo/researcher/config.toml pollen list demo-study
  pollen demo enrollment                    # only the enrollment walkthrough`,
    )
    .action(action<DemoFederationOptions>(demoFederation));

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
    .action(action<DemoEnrollmentOptions>(demoEnrollment));

  demo
    .command('oidc-provider')
    .description("run the demo's OpenID Provider (its researcher, the device flow) until stopped")
    .option('-p, --port <port>', 'port on 127.0.0.1 (0: any free port)', '0')
    .option('--access-token-ttl <seconds>', 'how long each access token lasts', '600')
    .addHelpText(
      'after',
      `
\`pollen demo --oidc\` runs its provider this way: with --keep it keeps running with the
federation, so the researcher's login goes on refreshing. It prints its issuer when ready.`,
    )
    .action(action<DemoProviderOptions>(demoOidcProvider));
}
