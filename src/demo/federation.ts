/**
 * The main job: a whole secure federation on this machine, with the commands an operator types,
 * each one a real `pollen` process. A project CA and Certificate Service; a SuperLink with mutual
 * TLS, node-key authentication and the service's CRL; N sites whose startup kits enroll
 * themselves; their node keys registered by the admin; an MNIST app (TypeScript, or PyTorch with
 * --app pytorch-mnist) trained for R rounds with a live per-round display; a summary; a clean
 * shutdown.
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PollenError } from '../errors.js';
import { sshPublicKeyLine } from '../pki/openssh.js';
import { DEMO_APPS, type DemoApp, type DemoPython } from './apps.js';
import { Processes, startDemoCertService } from './processes.js';
import {
  DEMO_RESEARCHER,
  type DemoProviderInfo,
  logInResearcher,
  writeDemoIdentityConfig,
} from './researcher.js';
import {
  acceptInvitation,
  createStudy,
  DEMO_FEDERATION,
  inviteResearcher,
  type StudySummary,
} from './study.js';

/** A round as `pollen list --run-id --json` shows it. */
interface RoundRow {
  round: number;
  metrics: Record<string, number>;
  nodes: string[];
  bytesSent: number;
  bytesReceived: number;
}

export interface FederationDemoOptions {
  workspace: string;
  /** The app trained (default: the TypeScript MNIST example). */
  app?: DemoApp;
  /** A Python app's interpreter (prepareDemoApp): every SuperNode and the SuperLink run it. */
  python?: DemoPython | null;
  sites: number;
  rounds: number;
  partitioning: 'iid' | 'non-iid';
  keep: boolean;
  /** People log in with an embedded OpenID Provider; a researcher, not the admin, submits the run. */
  oidc?: boolean;
  /** With --oidc: the lifetime of access tokens, in seconds (default 600). */
  accessTokenTtl?: number;
  timeoutMs?: number;
}

export interface FederationReporter {
  step(n: number, title: string, command?: string): void;
  line(text: string): void;
  round(r: RoundLine): void;
}

export interface RoundLine {
  round: number;
  metrics: Record<string, number>;
  nodes: number;
  bytes: number;
}

export interface FederationSummary {
  workspace: string;
  runId: string;
  /** The example trained: `mnist` or `pytorch-mnist`. */
  app: DemoApp['id'];
  /** A Python app: the interpreter its processes ran with. */
  python?: { path: string; from: string; executable: string; version: string };
  status: string;
  /** The federation the run belongs to: `default`, or with --oidc the one the researcher was invited into. */
  federation: string;
  /** Who started the run, as the SuperLink recorded it (the run's created_by). */
  createdBy: string;
  accuracy: number | null;
  loss: number | null;
  rounds: RoundLine[];
  sites: { name: string; nodeId: string }[];
  bytesMoved: number;
  seconds: number;
  trainingSeconds: number;
  keptRunning: boolean;
  /** With --oidc: who submitted the run, logged in with the embedded provider. */
  researcher?: { email: string; issuer: string; config: string };
  /** With --oidc: the federation the admin created, the researcher's invitation and membership. */
  study?: StudySummary;
  superlink?: { fleet: string; control: string; pid?: number };
  /** The SuperLink's audit trail, verified by the admin: entries, the anchoring checkpoint, who started the run. */
  audit: { verified: boolean; entries: number; anchoredAt: number | null; runStartedBy: string | null };
  /** With --keep: the processes left running (Certificate Service, SuperLink, sites). */
  pids?: number[];
  federationConfig: string;
}

const POLICY = `# Demo policy: sites on this machine enroll at once; anything else is refused.
metadata:
  project: "pollen-demo"
  description: "Auto-approve the demo sites on the local network"
  version: "1.0"
token:
  validity: 1d
  max_uses: 1
site:
  name_pattern: "site-*"
approval:
  method: policy
  rules:
    - name: "sites-on-this-machine"
      match:
        site_name_pattern: "site-*"
        source_ips: ["127.0.0.0/8", "::1/128"]
      action: approve
notifications:
  enabled: false
`;

/** The site's node key: ssh-keygen when the machine has it (what an operator uses), else Node. */
function makeNodeKey(path: string, comment: string): 'ssh-keygen' | 'node' {
  try {
    execFileSync('ssh-keygen', ['-q', '-t', 'ecdsa', '-b', '384', '-N', '', '-C', comment, '-f', path], {
      stdio: 'ignore',
    });
    return 'ssh-keygen';
  } catch {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    writeFileSync(path, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    writeFileSync(`${path}.pub`, `${sshPublicKeyLine(publicKey, comment)}\n`);
    return 'node';
  }
}

const json = <T>(text: string): T => JSON.parse(text) as T;

export async function runFederationDemo(
  o: FederationDemoOptions,
  r: FederationReporter,
): Promise<FederationSummary> {
  const started = Date.now();
  const ws = resolve(o.workspace);
  const paths = {
    ca: join(ws, 'ca'),
    admin: join(ws, 'admin'),
    tokens: join(ws, 'admin', 'tokens'),
    service: join(ws, 'cert-service'),
    superlink: join(ws, 'superlink'),
    sites: join(ws, 'sites'),
    logs: join(ws, 'logs'),
  };
  for (const p of [paths.admin, paths.service, paths.superlink, paths.sites, paths.logs])
    mkdirSync(p, { recursive: true });
  const federationConfig = join(paths.admin, 'config.toml');
  const app = o.app ?? DEMO_APPS.mnist;
  const python = o.python?.choice;
  // The SuperLink (ServerApp) and every site's SuperNode (ClientApps) take it as their --python.
  const px = new Processes(
    { POLLEN_CONFIG: federationConfig, ...(python && { POLLEN_PYTHON: python.python }) },
    started + (o.timeoutMs ?? 600_000),
  );
  const show = (cmd: string) => `pollen ${cmd}`;
  const names = Array.from({ length: o.sites }, (_, i) => `site-${i + 1}`);
  let kept = false;
  let provider: DemoProviderInfo | undefined;
  try {
    // 1. CA
    r.step(1, 'The project admin creates the project CA', show('cert init -n "Pollen Demo" -o ca'));
    const ca = json<{ rootFingerprint: string }>(
      (await px.must(['cert', 'init', '-n', 'Pollen Demo', '-o', paths.ca, '--json'])).stdout,
    );
    r.line(`root fingerprint ${ca.rootFingerprint}; an intermediate CA signs, the root stays offline`);

    // 2. Certificate Service
    r.step(
      2,
      'Start the Certificate Service with an approval policy',
      show('cert-service -c ca --policy policy.yaml'),
    );
    const apiKeyFile = join(paths.admin, 'api_key.txt');
    await px.must(['cert', 'api-key', '-o', apiKeyFile]);
    const policyFile = join(paths.admin, 'policy.yaml');
    writeFileSync(policyFile, POLICY);
    const { url: certServiceUrl } = await startDemoCertService(px, {
      ca: paths.ca,
      workspace: paths.service,
      apiKeyFile,
      policyFile,
      logFile: join(paths.logs, 'cert-service.log'),
    });
    r.line(`listening on ${certServiceUrl}`);
    const adminEnv = {
      POLLEN_CERT_SERVICE_URL: certServiceUrl,
      POLLEN_API_KEY: readFileSync(apiKeyFile, 'utf8').trim(),
      POLLEN_CA_CERT: join(paths.ca, 'rootCA.pem'),
    };

    // 3. SuperLink
    r.step(
      3,
      'Start the SuperLink: mutual TLS, registered node keys only, revocation list from the service',
      show(
        `superlink --cert superlink.crt --key superlink.key --root-ca rootCA.pem --enable-supernode-auth --cert-service URL${o.oidc ? ' --identity-config identity.toml' : ''}`,
      ),
    );
    if (o.oidc) {
      // A process of its own, like every service of the demo: with --keep it stays with them.
      provider = (
        await px.service<DemoProviderInfo>(
          ['demo', 'oidc-provider', '--access-token-ttl', String(o.accessTokenTtl ?? 600), '--json'],
          join(paths.logs, 'oidc-provider.log'),
        )
      ).ready;
      r.line(`OpenID Provider (embedded, for the project's people) at ${provider.issuer}`);
    }
    const slCerts = join(paths.superlink, 'certs');
    // Hand-issued by the project admin (the manual workflow), valid for 30 days.
    const issue = (name: string, type: string, out: string, extra: string[] = []) =>
      px.must([
        'cert',
        'site',
        '-n',
        name,
        '-t',
        type,
        '-c',
        paths.ca,
        '-o',
        out,
        '--validity',
        '30',
        ...extra,
      ]);
    await issue('superlink', 'server', slCerts, ['--host', 'localhost', '--host', '127.0.0.1']);
    const sl = await px.service<{ fleet: string; control: string }>(
      [
        'superlink',
        '--cert',
        join(slCerts, 'superlink.crt'),
        '--key',
        join(slCerts, 'superlink.key'),
        '--root-ca',
        join(slCerts, 'rootCA.pem'),
        '--state-dir',
        join(paths.superlink, 'state'),
        '--fleet-address',
        '127.0.0.1:0',
        '--control-address',
        '127.0.0.1:0',
        '--serverappio-address',
        '127.0.0.1:0',
        '--enable-supernode-auth',
        '--cert-service',
        certServiceUrl,
        ...(provider ? ['--identity-config', writeDemoIdentityConfig(paths.superlink, provider)] : []),
        // Signed often, so the demo's audit trail is anchored by the time it is verified.
        '--audit-checkpoint-interval',
        '2',
        '--log-level',
        'warn',
        '--json',
      ],
      join(paths.logs, 'superlink.log'),
    );
    const fleetPort = new URL(sl.ready.fleet).port;
    const controlPort = new URL(sl.ready.control).port;
    r.line(`Fleet API ${sl.ready.fleet}   Control API ${sl.ready.control}`);

    // 4. The admin's own credentials and federation
    r.step(
      4,
      'The admin gets an admin certificate and names the SuperLink for the CLI',
      show(`config superlink add demo --address 127.0.0.1:${controlPort} --certificate …`),
    );
    const adminCerts = join(paths.admin, 'certs');
    await issue('project-admin', 'admin', adminCerts, ['--role', 'project_admin']);
    await px.must([
      'config',
      'superlink',
      'add',
      'demo',
      '--address',
      `127.0.0.1:${controlPort}`,
      '--certificate',
      join(adminCerts, 'project-admin.crt'),
      '--private-key',
      join(adminCerts, 'project-admin.key'),
      '--root-certificate',
      join(adminCerts, 'rootCA.pem'),
      '--default',
    ]);
    r.line(`SuperLink "demo" saved in ${federationConfig} (federation default)`);

    // 5. Tokens and kits
    r.step(
      5,
      `Issue ${o.sites} single-use tokens and build the sites' startup kits`,
      show(
        `token batch --names ${names.join(' ')}  →  pollen package -n site-1 -e grpcs://localhost:${fleetPort} …`,
      ),
    );
    await px.must(['token', 'batch', '--names', ...names, '-o', `${paths.tokens}/`, '--json'], adminEnv);
    // Each kit is its own folder: the org admins build them at once.
    await Promise.all(
      names.map((n) => {
        const token = readFileSync(join(paths.tokens, `${n}.token`), 'utf8').trim();
        return px.must([
          'package',
          '-n',
          n,
          '-e',
          `grpcs://localhost:${fleetPort}`,
          '-t',
          'client',
          '-w',
          paths.sites,
          '--cert-service',
          certServiceUrl,
          '--token',
          token,
          '-c',
          paths.ca,
        ]);
      }),
    );
    r.line(`${o.sites} signed kits in ${paths.sites}/`);

    // 6. Node keys
    r.step(
      6,
      'Each site makes its node key; the admin registers the public keys',
      show('supernode register site-1/local/node_key.pub demo'),
    );
    const keys = names.map((n) => {
      const key = join(paths.sites, n, 'local', 'node_key');
      mkdirSync(join(paths.sites, n, 'local'), { recursive: true });
      return { name: n, key, how: makeNodeKey(key, n) };
    });
    // The registrations are independent: all at once, shown in site order.
    const sites = await Promise.all(
      keys.map(async ({ name, key }) => {
        const { nodeId } = json<{ nodeId: string }>(
          (await px.must(['supernode', 'register', `${key}.pub`, 'demo', '--name', name, '--json'])).stdout,
        );
        return { name, nodeId, key };
      }),
    );
    for (const [i, s] of sites.entries())
      r.line(`${s.name}: ECDSA P-384 key (${keys[i]!.how}) → node ${s.nodeId}`);

    // 7. Sites start: enroll, then run their SuperNode
    r.step(
      7,
      'Every site starts its kit: it enrolls itself, then connects its SuperNode',
      './startup/start.sh  (pollen start KIT)',
    );
    sites.forEach((s, i) => {
      px.background(['start', join(paths.sites, s.name)], join(paths.logs, `${s.name}.log`), {
        POLLEN_AUTH_SUPERNODE_PRIVATE_KEY: s.key,
        POLLEN_NODE_CONFIG: `partition-id=${i} num-partitions=${o.sites}`,
        POLLEN_HEARTBEAT_INTERVAL: '2',
        POLLEN_LOG_LEVEL: 'warn',
      });
    });
    const until = Date.now() + 90_000;
    await sitesConnected(
      sites.map((s) => join(paths.logs, `${s.name}.log`)),
      until,
    );
    for (;;) {
      const { nodes } = json<{ nodes: { nodeId: string; status: string }[] }>(
        (await px.must(['supernode', 'list', 'demo', '--json'])).stdout,
      );
      const online = nodes.filter((n) => n.status === 'online').length;
      if (online === o.sites) {
        r.line(`${online}/${o.sites} SuperNodes online (each enrolled over the Certificate Service first)`);
        break;
      }
      if (Date.now() > until)
        throw new PollenError('UNAVAILABLE', `Only ${online} of ${o.sites} SuperNodes came online`, {
          hint: `See the logs in ${paths.logs} and the kits' log.txt`,
        });
      await new Promise((res) => setTimeout(res, 500));
    }

    // With --oidc: the admin creates the demo's federation and invites a researcher with no kit;
    // she logs in, accepts, and the run is hers, in that federation.
    let researcher: FederationSummary['researcher'];
    let study: StudySummary | undefined;
    let userEnv: NodeJS.ProcessEnv = {};
    if (provider) {
      r.step(
        8,
        `The admin creates the federation ${DEMO_FEDERATION} and adds the sites' nodes to it`,
        show(`federation create ${DEMO_FEDERATION} && pollen federation add-node ${DEMO_FEDERATION} NODE_ID`),
      );
      const created = await createStudy(px, r, sites);
      r.step(
        9,
        'The admin invites a researcher by her e-mail address, as lead of the federation',
        show(`federation invite ${DEMO_FEDERATION} --email ${DEMO_RESEARCHER.email} --role lead`),
      );
      const { code, invitation } = await inviteResearcher(px, r);
      const config = join(ws, 'researcher', 'config.toml');
      r.step(
        10,
        'The researcher logs in with the OpenID Provider (no certificate, only the root fingerprint) and accepts',
        show(
          `login demo --address 127.0.0.1:${controlPort} --root-fingerprint sha256:…  &&  pollen federation accept pollen_inv_…`,
        ),
      );
      const who = await logInResearcher(px, {
        config,
        controlAddress: `127.0.0.1:${controlPort}`,
        rootCa: join(slCerts, 'rootCA.pem'),
        onCode: (code, url) =>
          r.line(`code ${code} at ${url}: the demo signs in for ${DEMO_RESEARCHER.email} there (no browser)`),
      });
      r.line(`logged in as ${who.email}; her token, not a certificate, goes with each call`);
      researcher = { email: who.email, issuer: provider.issuer, config };
      userEnv = { POLLEN_CONFIG: config };
      const member = await acceptInvitation(px, r, code, userEnv);
      study = { ...created, invitation: { ...invitation, status: 'accepted' }, member };
    }
    // The admin runs in the SuperLink's default federation; the researcher in hers.
    const target = study ? DEMO_FEDERATION : 'demo';

    // The run
    r.step(
      provider ? 11 : 8,
      `${provider ? 'The researcher runs' : 'Run'} ${app.title} for ${o.rounds} rounds (FedAvg, ${o.partitioning} partitions)`,
      show(
        `run examples/${app.id} ${target} --run-config ${app.roundsKey}=${o.rounds} && pollen log RUN_ID --stream`,
      ),
    );
    if (python)
      r.line(
        `Python: ${python.python} (${python.check.executable}, Python ${python.check.pythonVersion}, from ${python.from}) has ${python.check.results.map((x) => `${x.name} ${x.found}`).join(', ')}; the SuperLink and every SuperNode run it (POLLEN_PYTHON)`,
      );
    const trainStart = Date.now();
    const { runId } = json<{ runId: string }>(
      (
        await px.must(
          [
            'run',
            app.dir,
            target,
            '--run-config',
            `${app.roundsKey}=${o.rounds}`,
            '--run-config',
            `partitioning=${o.partitioning}`,
            '--json',
          ],
          userEnv,
        )
      ).stdout,
    );
    r.line(`run ${runId} started`);
    const shown = new Set<number>();
    let polling = true;
    // The rounds are listed when the run's log moves (the ServerApp prints a line per round), and
    // at least every half minute for an app that prints nothing: each `pollen list` is a process
    // that takes a core from the sites while they train (about a second of CPU).
    let moved = false;
    let wake = () => {};
    const logMoved = () => {
      moved = true;
      wake();
    };
    const poll = (async () => {
      while (polling) {
        moved = false;
        const res = await px.run(['list', target, '--run-id', runId, '--json'], userEnv);
        if (res.code === 0) {
          const d = json<{ rounds: RoundRow[] }>(res.stdout);
          for (const x of d.rounds)
            if (!shown.has(x.round)) {
              shown.add(x.round);
              r.round({
                round: x.round,
                metrics: x.metrics,
                nodes: x.nodes.length,
                bytes: x.bytesSent + x.bytesReceived,
              });
            }
        }
        if (!moved && polling)
          await new Promise<void>((res) => {
            const timer = setTimeout(res, 30_000);
            wake = () => {
              clearTimeout(timer);
              res();
            };
          });
        wake = () => {};
      }
    })();
    const logs = await px.run(['log', runId, target, '--stream'], userEnv, logMoved);
    polling = false;
    wake();
    await poll;
    const trainingSeconds = (Date.now() - trainStart) / 1000;
    const detail = json<{
      run: { status: string; subStatus: string | null; reason: string | null; createdBy: string };
      rounds: RoundRow[];
    }>((await px.must(['list', target, '--run-id', runId, '--json'], userEnv)).stdout);
    const rounds = detail.rounds.map((x) => ({
      round: x.round,
      metrics: x.metrics,
      nodes: x.nodes.length,
      bytes: x.bytesSent + x.bytesReceived,
    }));
    for (const x of rounds) if (!shown.has(x.round)) r.round(x);
    if (detail.run.subStatus !== 'completed')
      throw new PollenError('RUN_FAILED', `The run ${detail.run.subStatus}: ${detail.run.reason}`, {
        detail: logs.stdout.slice(-4000),
      });
    const audit = await verifyAudit(px, r, provider ? 12 : 9);
    const last = rounds[rounds.length - 1]?.metrics ?? {};
    const accuracy = last['centralized-accuracy'] ?? last.accuracy ?? null;
    const summary: FederationSummary = {
      workspace: ws,
      runId,
      app: app.id,
      ...(python && {
        python: {
          path: python.python,
          from: python.from,
          executable: python.check.executable,
          version: python.check.pythonVersion,
        },
      }),
      status: `${detail.run.status}:${detail.run.subStatus}`,
      federation: study?.name ?? 'default',
      createdBy: detail.run.createdBy,
      accuracy,
      loss: last['centralized-loss'] ?? last.loss ?? null,
      rounds,
      sites: sites.map(({ name, nodeId }) => ({ name, nodeId })),
      bytesMoved: rounds.reduce((s, x) => s + x.bytes, 0),
      seconds: Math.round((Date.now() - started) / 100) / 10,
      trainingSeconds: Math.round(trainingSeconds * 10) / 10,
      keptRunning: o.keep,
      federationConfig,
      ...(researcher && { researcher }),
      ...(study && { study }),
      audit,
      ...(o.keep && { superlink: { fleet: sl.ready.fleet, control: sl.ready.control, pid: sl.child.pid } }),
    };
    if (o.keep) {
      summary.pids = [...px.children].flatMap((c) => (c.pid === undefined ? [] : [c.pid]));
      for (const c of [...px.children]) px.keep(c);
      kept = true;
    }
    return summary;
  } finally {
    if (!kept) await px.stopAll();
  }
}

/**
 * Until each site's log says its SuperNode connected, or `until`: read here, where a
 * `pollen supernode list` process per poll would take a core from the sites while they enroll.
 */
async function sitesConnected(logs: string[], until: number): Promise<void> {
  const connected = (log: string) =>
    existsSync(log) && readFileSync(log, 'utf8').includes(' connected as node ');
  while (Date.now() < until && !logs.every(connected)) await new Promise((res) => setTimeout(res, 200));
}

/** The admin lists the SuperLink's audit trail and verifies it against the project root. */
async function verifyAudit(
  px: Processes,
  r: FederationReporter,
  step: number,
): Promise<FederationSummary['audit']> {
  r.step(
    step,
    'The audit trail: who did what, verified here against the project root',
    'pollen audit verify',
  );
  // The checkpoint interval is 2 s: wait for the one that signs the head after the run started.
  // Each verify is a process (most of a second of CPU): one an interval, not several; for half a
  // minute at most, as a loaded host may write the checkpoint late.
  let check = json<{ entries: number; anchoredAt: number | null; head: { seq: number } | null }>(
    (await px.must(['audit', 'verify', '--json'])).stdout,
  );
  for (const until = Date.now() + 30_000; Date.now() < until && check.anchoredAt !== check.head?.seq; ) {
    await new Promise((res) => setTimeout(res, 2000));
    check = json<typeof check>((await px.must(['audit', 'verify', '--json'])).stdout);
  }
  const { entries } = json<{
    entries: {
      action: string;
      actor: string;
      actorName: string | null;
      auth: string | null;
      target: string;
    }[];
  }>((await px.must(['audit', 'list', '--limit', '10000', '--json'])).stdout);
  const start = entries.find((e) => e.action === 'Control/StartRun');
  const accepted = entries.find((e) => e.action === 'Federations/AcceptInvitation');
  if (accepted) r.line(`invitation accepted by ${accepted.actorName ?? accepted.actor} (${accepted.auth})`);
  const runStartedBy = start ? (start.actorName ?? start.actor) : null;
  if (start) r.line(`run ${start.target} started by ${runStartedBy} (${start.auth})`);
  r.line(
    `verified: ${check.entries} entries, chain intact, ${check.anchoredAt === null ? 'no checkpoint yet' : `signed by the SuperLink up to entry ${check.anchoredAt}`}`,
  );
  // `pollen audit verify` exits non-zero on a broken trail, which ends the demo before this.
  return { verified: true, entries: check.entries, anchoredAt: check.anchoredAt, runStartedBy };
}
