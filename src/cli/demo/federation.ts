import { PollenError } from '../../errors.js';
import { bold, dim, type Output, ok } from '../output.js';
import { demoWorkspace, narrator, shutDownLine, tidyWorkspace } from './narration.js';
import { accessTokenTtl } from './oidc-provider.js';

export interface DemoFederationOptions {
  app: string;
  python?: string;
  sites: string;
  rounds: string;
  partitioning: string;
  workspace?: string;
  keep?: boolean;
  oidc?: boolean;
  accessTokenTtl: string;
}

/** `pollen demo`: a whole secure federation on this machine, narrated, then stopped. */
export async function demoFederation(o: DemoFederationOptions, out: Output): Promise<void> {
  const sites = Number(o.sites);
  const rounds = Number(o.rounds);
  if (!Number.isInteger(sites) || sites < 1 || sites > 20)
    throw new PollenError('INVALID_ARGUMENT', '--sites must be a whole number from 1 to 20');
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 100)
    throw new PollenError('INVALID_ARGUMENT', '--rounds must be a whole number from 1 to 100');
  const ttl = accessTokenTtl(o.accessTokenTtl);
  if (o.partitioning !== 'iid' && o.partitioning !== 'non-iid')
    throw new PollenError('INVALID_ARGUMENT', '--partitioning is iid or non-iid');
  const { assertDemoAppAvailable, demoApp, prepareDemoApp } = await import('../../demo/apps.js');
  const app = demoApp(o.app);
  if (o.python !== undefined && !app.data)
    throw new PollenError('INVALID_ARGUMENT', `--python is for a Python app; ${app.id} is TypeScript`, {
      hint: 'Add --app pytorch-mnist, or leave out --python.',
    });
  assertDemoAppAvailable(app);
  const { runFederationDemo } = await import('../../demo/federation.js');
  const python = await prepareDemoApp(app, o.python);
  const workspace = demoWorkspace(o.workspace);
  const { say, step, line } = narrator(out);
  say(`${bold('Pollen')} secure federation demo — workspace ${workspace}`);
  if (python) {
    const c = python.choice;
    for (const p of c.passedOver) say(dim(`   Python ${p.python} (${p.from}) passed over: it ${p.why}`));
    say(`   Python for ${app.id}: ${c.python} (${c.from}, Python ${c.check.pythonVersion})`);
    if (python.preparedData) say(dim(`   digits converted once into examples/${app.id}/${app.data?.file}`));
  }
  let summary: Awaited<ReturnType<typeof runFederationDemo>>;
  try {
    summary = await runFederationDemo(
      {
        workspace,
        app,
        python,
        sites,
        rounds,
        partitioning: o.partitioning,
        keep: Boolean(o.keep),
        oidc: Boolean(o.oidc),
        accessTokenTtl: ttl,
      },
      {
        step,
        line,
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
  const removed = tidyWorkspace(workspace, o);
  out.result({ ...summary, workspaceRemoved: removed }, (s) => [
    '',
    `${ok('✓')} ${s.sites.length} sites trained ${s.app === 'mnist' ? 'MNIST' : `MNIST with PyTorch (${s.python?.path})`} for ${s.rounds.length} rounds: accuracy ${
      s.accuracy === null ? 'n/a' : `${(s.accuracy * 100).toFixed(1)}%`
    } on held-out digits, ${(s.bytesMoved / 1e6).toFixed(1)} MB of model updates moved, training ${s.trainingSeconds}s, ${s.seconds}s in all`,
    `  run ${s.runId} in federation ${s.federation}, started by ${s.createdBy}${
      s.researcher
        ? ` (invited as ${s.study?.member.role}, logged in with the OpenID Provider ${s.researcher.issuer})`
        : ''
    }`,
    `  audit trail ${s.audit.verified ? 'verified' : 'NOT verified'}: ${s.audit.entries} entries${
      s.audit.anchoredAt === null ? '' : `, signed up to entry ${s.audit.anchoredAt}`
    }${s.audit.runStartedBy ? `; it names ${s.audit.runStartedBy} as who started the run` : ''}`,
    s.keptRunning
      ? `Still running (SuperLink ${s.superlink?.control}); try: POLLEN_CONFIG=${s.federationConfig} pollen list\n` +
        `Stop it all with: kill ${s.pids?.join(' ')}`
      : shutDownLine(s),
  ]);
}
