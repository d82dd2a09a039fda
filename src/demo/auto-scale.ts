import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PollenError } from '../errors.js';
import { certificateFingerprint } from '../pki/fingerprint.js';
import { verifyChain } from '../pki/verify.js';
import { Processes, type RunResult, startDemoCertService } from './processes.js';

/**
 * The auto-scale enrollment workflow of the seeds, end to end on one machine, with the same
 * commands an operator types: every step runs `pollen …` as its own process.
 */

export interface DemoOptions {
  workspace: string;
  /** Sites that the policy approves automatically (hospital-1..N). */
  sites: number;
  /** Keep the Certificate Service running at the end. */
  keep: boolean;
  /** Overall bound on the demo. */
  timeoutMs?: number;
}

export interface DemoReporter {
  step(n: number, title: string, command?: string): void;
  line(text: string): void;
}

export interface DemoSummary {
  workspace: string;
  certServiceUrl: string;
  rootFingerprint: string;
  enrolled: {
    name: string;
    type: string;
    serial: string;
    notAfter: string;
    approvedBy: string;
    verified: boolean;
  }[];
  pendingApproved: string[];
  refused: { what: string; code: string }[];
  seconds: number;
  keptRunning: boolean;
  certServicePid?: number;
}

const POLICY = `# Demo policy: hospitals on our network enroll at once, partners wait for an admin,
# anyone else is refused (no rule matched).
metadata:
  project: "pollen-demo"
  description: "Auto-approve hospitals on the local network, partners need approval"
  version: "1.0"
token:
  validity: 1d
  max_uses: 1
site:
  name_pattern: "*"
user:
  allowed_roles: [lead, member, org_admin]
  default_role: lead
approval:
  method: policy
  rules:
    - name: "hospitals-on-our-network"
      description: "Auto-approve hospitals from the local network"
      match:
        site_name_pattern: "hospital-*"
        source_ips: ["127.0.0.0/8", "::1/128"]
      action: approve
    - name: "partners-need-approval"
      description: "An admin approves partner sites"
      match:
        site_name_pattern: "partner-*"
      action: pending
notifications:
  enabled: false
`;

export async function runEnrollmentDemo(o: DemoOptions, r: DemoReporter): Promise<DemoSummary> {
  const started = Date.now();
  const deadline = started + (o.timeoutMs ?? 180_000);
  const ws = resolve(o.workspace);
  const paths = {
    ca: join(ws, 'ca'),
    admin: join(ws, 'admin'),
    service: join(ws, 'cert-service'),
    tokens: join(ws, 'admin', 'tokens'),
    sites: join(ws, 'sites'),
  };
  mkdirSync(paths.admin, { recursive: true });

  const px = new Processes({}, deadline);
  const run = (args: string[], env?: NodeJS.ProcessEnv) => px.run(args, env);
  const must = (args: string[], env?: NodeJS.ProcessEnv) => px.must(args, env);
  const json = <T>(res: RunResult) => JSON.parse(res.stdout) as T;
  const show = (cmd: string) => `pollen ${cmd}`;

  let service: ChildProcess | undefined;
  try {
    // 1. The project CA
    r.step(1, 'Project admin creates the project CA', show('cert init -n "Pollen Demo" -o ca'));
    const ca = json<{ rootFingerprint: string }>(
      await must(['cert', 'init', '-n', 'Pollen Demo', '-o', paths.ca, '--json']),
    );
    r.line(`root CA fingerprint ${ca.rootFingerprint} (root key stays offline; an intermediate signs)`);

    // 2. API key and policy
    r.step(
      2,
      'Project admin makes an API key and an enrollment policy',
      show('cert api-key -o admin/api_key.txt'),
    );
    const apiKeyFile = join(paths.admin, 'api_key.txt');
    await must(['cert', 'api-key', '-o', apiKeyFile]);
    const policyFile = join(paths.admin, 'policy.yaml');
    writeFileSync(policyFile, POLICY);
    await must(['policy', 'check', policyFile]);
    r.line('policy: hospital-* from 127.0.0.0/8 → approve; partner-* → pending; anything else → reject');

    // 3. The Certificate Service
    r.step(
      3,
      'Start the Certificate Service (HTTPS, SQLite store)',
      show('cert-service -c ca --api-key-file admin/api_key.txt --policy admin/policy.yaml'),
    );
    mkdirSync(paths.service, { recursive: true });
    // Logs go to a file so the service can outlive the demo (--keep) without a pipe to it.
    const svc = await startDemoCertService(px, {
      ca: paths.ca,
      workspace: paths.service,
      apiKeyFile,
      policyFile,
      logFile: join(paths.service, 'service.log'),
    });
    service = svc.child;
    r.line(`listening on ${svc.url}`);
    const admin = {
      POLLEN_CERT_SERVICE_URL: svc.url,
      POLLEN_API_KEY: readFileSync(apiKeyFile, 'utf8').trim(),
      POLLEN_CA_CERT: join(paths.ca, 'rootCA.pem'),
    };

    // 4. Tokens
    const hospitals = Array.from({ length: o.sites }, (_, i) => `hospital-${i + 1}`);
    const names = [...hospitals, 'partner-1'];
    r.step(
      4,
      `Issue ${names.length} single-use enrollment tokens through the service`,
      show(`token batch --names ${names.join(' ')} -o admin/tokens/`),
    );
    await must(['token', 'batch', '--names', ...names, '-o', `${paths.tokens}/`, '--json'], admin);
    r.line(`tokens written to ${paths.tokens}/NAME.token (0600), one per site`);

    // 5. Startup kits
    r.step(
      5,
      'Org admins build their startup kits with the token inside',
      show('package -n hospital-1 -e grpc://localhost:9092 -t client --cert-service URL --token T'),
    );
    // Each kit is its own folder: the org admins build them at once.
    await Promise.all(
      names.map((n) => {
        const token = readFileSync(join(paths.tokens, `${n}.token`), 'utf8').trim();
        return must([
          'package',
          '-n',
          n,
          '-e',
          'grpc://localhost:9092',
          '-t',
          'client',
          '-w',
          paths.sites,
          '--cert-service',
          svc.url,
          '--token',
          token,
          '-c',
          paths.ca,
        ]);
      }),
    );
    await must(['package', 'verify', join(paths.sites, 'hospital-1')]);
    r.line(`${names.length} kits in ${paths.sites}/ (signed manifest verified for hospital-1)`);

    // 6. Sites start and enroll themselves
    r.step(6, 'Every site starts at once and enrolls itself', './startup/start.sh  (runs: pollen start KIT)');
    const siteRuns = new Map(
      names.map((n) => [
        n,
        run([
          'start',
          join(paths.sites, n),
          '--enroll-only',
          '--poll-interval',
          '0.5',
          '--max-wait',
          '120',
        ]).then((res) => {
          const lines = `${res.stderr}\n${res.stdout}`.split('\n');
          const waits = lines.filter((x) => /waiting for an admin to approve/.test(x)).slice(0, 1);
          const shown = lines.filter((x) => /pinned|Enrollment successful|rejected/i.test(x));
          for (const l of [...waits, ...shown]) r.line(`[${n}] ${l.replace(/^[›\s]+/, '').trim()}`);
          return res;
        }),
      ]),
    );
    for (const n of hospitals) {
      const res = await siteRuns.get(n)!;
      if (res.code !== 0)
        throw new PollenError('INTERNAL', `${n} did not enroll (exit ${res.code})`, { detail: res.stderr });
    }

    // 7. The partner waits for an admin
    r.step(
      7,
      'partner-1 waits for approval; the admin looks and approves',
      show('enrollment list  →  pollen enrollment approve partner-1'),
    );
    let pending: { name: string; rule: string }[] = [];
    while (Date.now() < deadline) {
      pending = json<{ requests: { name: string; rule: string }[] }>(
        await must(['enrollment', 'list', '--json'], admin),
      ).requests;
      if (pending.some((p) => p.name === 'partner-1')) break;
      await new Promise((res) => setTimeout(res, 200));
    }
    for (const p of pending) r.line(`pending: ${p.name} (rule ${p.rule})`);
    await must(['enrollment', 'approve', 'partner-1', '--type', 'client'], admin);
    const partner = await siteRuns.get('partner-1')!;
    if (partner.code !== 0)
      throw new PollenError('INTERNAL', `partner-1 did not enroll (exit ${partner.code})`, {
        detail: partner.stderr,
      });

    // 8. A replayed token is refused
    r.step(8, "An intruder replays hospital-1's token", show('start intruder-kit  (token already used)'));
    const refused: DemoSummary['refused'] = [];
    const intruderKit = join(ws, 'intruder');
    await must([
      'package',
      '-n',
      'hospital-1',
      '-e',
      'grpc://localhost:9092',
      '-t',
      'client',
      '-o',
      intruderKit,
      '--cert-service',
      svc.url,
      '--token',
      readFileSync(join(paths.tokens, 'hospital-1.token'), 'utf8').trim(),
    ]);
    const replay = await run(['start', intruderKit, '--enroll-only', '--max-wait', '5', '--json']);
    const code = (() => {
      try {
        return json<{ error?: { code: string } }>(replay).error?.code ?? `exit ${replay.code}`;
      } catch {
        return `exit ${replay.code}`;
      }
    })();
    refused.push({ what: 'replayed token', code });
    r.line(`refused: ${code} (exit ${replay.code})`);

    // 9. Enrolled list and independent verification
    r.step(
      9,
      'The admin lists who is enrolled; every certificate is checked against the root',
      show('enrollment enrolled'),
    );
    const enrolled = json<{
      enrolled: { name: string; type: string; serial: string; notAfter: string; approvedBy: string }[];
    }>(await must(['enrollment', 'enrolled', '--json'], admin)).enrolled;
    const rootPem = readFileSync(join(paths.ca, 'rootCA.pem'), 'utf8');
    const summaryRows = enrolled.map((e) => {
      const dir = join(paths.sites, e.name, 'startup');
      const leaf = readFileSync(join(dir, `${e.name}.crt`), 'utf8');
      const chain = readFileSync(join(dir, 'chain.pem'), 'utf8');
      const verified = verifyChain(leaf, chain, rootPem);
      r.line(
        `${e.name.padEnd(12)} serial ${e.serial}  expires ${e.notAfter}  by ${e.approvedBy}  chain ${verified ? 'OK' : 'FAILED'}`,
      );
      return { ...e, verified };
    });

    const summary: DemoSummary = {
      workspace: ws,
      certServiceUrl: svc.url,
      rootFingerprint: certificateFingerprint(rootPem),
      enrolled: summaryRows,
      pendingApproved: ['partner-1'],
      refused,
      seconds: Math.round((Date.now() - started) / 100) / 10,
      keptRunning: o.keep,
      certServicePid: o.keep ? service?.pid : undefined,
    };
    if (o.keep && service) {
      px.keep(service);
      service = undefined;
    }
    return summary;
  } finally {
    await px.stopAll();
  }
}
