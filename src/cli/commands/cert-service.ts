import cluster from 'node:cluster';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Command, Option } from 'commander';
import type { CertServiceConfig } from '../../enrollment/service/server.js';
import { PollenError } from '../../errors.js';
import { action, requireCaPath, untilSignal } from '../command.js';
import { apiKeyOption, caOption, policyOption } from '../env-options.js';
import { bold, dim, type Output } from '../output.js';

const collect = (v: string, prev: string[] = []) => [...prev, v];

interface Opts {
  ca?: string;
  workspace: string;
  database?: string;
  host: string;
  port: string;
  apiKeyFile: string[];
  apiKey?: string;
  policy?: string;
  acceptPolicy: string[];
  hostname: string[];
  siteValidity: string;
  /** Addresses or CIDRs of trusted reverse proxies (never "any hop"). */
  trustProxy?: string;
  logLevel: string;
  workers: string;
  smtpUrl?: string;
  smtpFrom?: string;
  adminEmail?: string;
}

export function registerCertService(program: Command): void {
  program
    .command('cert-service')
    .description(
      'run the Certificate Service: enrollment with tokens, approvals, renewal, CRL (HTTPS, default port 8443)',
    )
    .addOption(caOption())
    .option('-w, --workspace <dir>', 'folder for the service state and its TLS certificate', './cert-service')
    .option(
      '--database <url>',
      'store: a SQLite path (default: WORKSPACE/cert-service.db) or postgres://user@host:port/db',
    )
    .option('--host <addr>', 'address to listen on', '0.0.0.0')
    .option('-p, --port <port>', 'port to listen on', '8443')
    .option(
      '--api-key-file <file>',
      'admin API key file from `pollen cert api-key` (repeatable; or POLLEN_API_KEY)',
      collect,
      [],
    )
    .addOption(apiKeyOption('an admin API key itself (prefer --api-key-file or the environment variable)'))
    .addOption(policyOption('--policy <file>', 'enrollment policy YAML for tokens issued by the service'))
    .option(
      '--accept-policy <file>',
      'an earlier policy whose outstanding tokens stay valid (repeatable)',
      collect,
      [],
    )
    .option('--hostname <name>', 'DNS name or IP the service is reached at (repeatable)', collect, [])
    .option('--site-validity <days>', 'validity of site certificates; sites renew at two thirds', '30')
    .option(
      '--trust-proxy <addresses>',
      'comma-separated addresses/CIDRs of reverse proxies whose X-Forwarded-For gives the client address',
    )
    .option('--log-level <level>', 'fatal, error, warn, info, debug', 'info')
    .option(
      '--workers <n>',
      'processes serving the port together (use the cores of the host; SQLite or PostgreSQL)',
      '1',
    )
    .addOption(
      new Option('--smtp-url <url>', 'SMTP relay for e-mail notifications, smtp://HOST:PORT').env(
        'POLLEN_SMTP_URL',
      ),
    )
    .option('--smtp-from <address>', 'sender of notification e-mails', 'pollen@localhost')
    .option('--admin-email <address>', 'recipient when a policy enables e-mail without listing recipients')
    .addHelpText(
      'after',
      `
Examples:
  pollen cert api-key -o api_key.txt
  pollen cert-service -c ./ca --api-key-file api_key.txt --hostname certs.example.com
  pollen cert-service -c ./ca --api-key-file api_key.txt --database postgres://pollen@db:5432/pollen

The service keeps only the SHA-256 of each API key. Logs go to stderr as JSON lines (pino).
Stop it with Ctrl-C or SIGTERM: it finishes the requests in flight, then exits.`,
    )
    .action(
      action<Opts>(async (o, out) => {
        // Loaded here, not at start-up: the server stack (fastify, SQL drivers) is the CLI's heaviest part.
        const { default: pino } = await import('pino');
        const { prepareCertService, startCertService } = await import('../../enrollment/service/server.js');
        const keys = o.apiKeyFile.map((f) => readFileSync(f, 'utf8').trim());
        if (o.apiKey) keys.push(o.apiKey.trim());
        const port = Number(o.port);
        if (!Number.isInteger(port) || port < 0 || port > 65535)
          throw new PollenError('INVALID_ARGUMENT', `--port must be 0-65535 (got ${o.port})`);
        const workers = Number(o.workers);
        if (!Number.isInteger(workers) || workers < 1 || workers > 64)
          throw new PollenError('INVALID_ARGUMENT', `--workers must be 1-64 (got ${o.workers})`);
        const caDir = requireCaPath(o.ca);
        if (cluster.isPrimary && existsSync(join(caDir, 'rootCA.key')))
          out.warn(
            `the root CA key is in ${caDir}: the service needs only rootCA.pem, intermediateCA.pem/.key, token.key and ca.json — keep rootCA.key offline`,
          );
        const config: CertServiceConfig = {
          caDir,
          workspace: o.workspace,
          database: o.database,
          host: o.host,
          port,
          apiKeys: keys,
          policyFile: o.policy,
          acceptPolicyFiles: o.acceptPolicy,
          hostnames: o.hostname.length ? o.hostname : undefined,
          siteValidityDays: Number(o.siteValidity),
          trustProxy: o.trustProxy,
          smtpUrl: o.smtpUrl,
          smtpFrom: o.smtpFrom,
          adminEmail: o.adminEmail,
          logger: pino({ level: o.logLevel }, pino.destination(2)),
        };
        if (workers > 1 && cluster.isPrimary) return runWorkers(config, workers, out, prepareCertService);
        const running = await startCertService({
          ...config,
          // one worker keeps the store tidy
          tidyIntervalMs: cluster.isWorker && cluster.worker?.id !== 1 ? 0 : undefined,
        });
        if (cluster.isWorker) {
          process.send?.({ type: 'ready', url: running.url, port: running.port });
          await untilSignal(async () => {
            // A worker's share of the listening socket belongs to the primary: give requests in
            // flight a few seconds, then leave (the primary is stopping all workers).
            const closed = running.close().then(() => true);
            const done = await Promise.race([
              closed,
              new Promise<false>((r) => setTimeout(() => r(false), 5000).unref()),
            ]);
            if (!done) process.exit(0);
          });
          process.exit(0);
        }
        out.result(
          {
            url: running.url,
            port: running.port,
            rootFingerprint: running.rootFingerprint,
            database: running.databaseLocation,
          },
          (d) => [
            `${bold('Certificate Service')} listening on ${d.url}`,
            `  root fingerprint  ${d.rootFingerprint}`,
            `  store             ${d.database}`,
            dim('  Ctrl-C to stop'),
          ],
        );
        await untilSignal(() => {
          out.progress('stopping the Certificate Service');
          return running.close();
        });
      }),
    );
}

/**
 * Several processes serve one port (node:cluster hands each connection to one of them); they
 * share the store. The primary prepares the store and certificate once, starts the workers,
 * restarts one that dies, and stops them all on a signal.
 */
async function runWorkers(
  config: CertServiceConfig,
  n: number,
  out: Output,
  prepare: (c: CertServiceConfig) => Promise<void>,
): Promise<void> {
  await prepare({ ...config, logger: false });
  let stopping = false;
  const ready = new Map<number, { url: string; port: number }>();
  const fork = () => cluster.fork({ POLLEN_CERT_SERVICE_WORKER: '1' });
  await new Promise<void>((res, rej) => {
    cluster.on('message', (worker, msg: { type?: string; url: string; port: number }) => {
      if (msg?.type !== 'ready') return;
      ready.set(worker.id, msg);
      if (ready.size === n) res();
    });
    cluster.on('exit', (worker, code) => {
      ready.delete(worker.id);
      if (stopping) return;
      if (ready.size < n && [...Object.values(cluster.workers ?? {})].length === 0 && code !== 0)
        rej(new PollenError('UNAVAILABLE', `A Certificate Service worker exited (${code}) while starting`));
      out.warn(`worker ${worker.id} exited (${code}); starting another`);
      setTimeout(fork, 1000).unref();
    });
    for (let i = 0; i < n; i++) fork();
  });
  const first = [...ready.values()][0]!;
  out.result({ url: first.url, port: first.port, workers: n }, (d) => [
    `${bold('Certificate Service')} listening on ${d.url} with ${d.workers} worker processes`,
    dim('  Ctrl-C to stop'),
  ]);
  await untilSignal(async () => {
    stopping = true;
    out.progress('stopping the Certificate Service workers');
    const all = Object.values(cluster.workers ?? {}).filter((w) => w !== undefined);
    await Promise.all(
      all.map((w) => {
        if (w.isDead()) return Promise.resolve();
        const exited = new Promise<void>((res) => w.once('exit', () => res()));
        w.process.kill('SIGTERM');
        return exited;
      }),
    );
  });
}
