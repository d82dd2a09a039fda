import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import pino from 'pino';
import { startCertService } from '../../enrollment/service/server.js';
import { PollenError } from '../../errors.js';
import { action, fromEnv } from '../command.js';
import { bold, dim } from '../output.js';
import { requireCaPath } from './cert.js';

const collect = (v: string, prev: string[] = []) => [...prev, v];

interface Opts {
  ca?: string;
  workspace: string;
  database?: string;
  host: string;
  port: string;
  apiKeyFile: string[];
  policy?: string;
  acceptPolicy: string[];
  hostname: string[];
  siteValidity: string;
  /** Addresses or CIDRs of trusted reverse proxies (never "any hop"). */
  trustProxy?: string;
  logLevel: string;
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
    .option('-c, --ca <dir>', 'CA folder from `pollen cert init` (or POLLEN_CA_PATH)')
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
    .option(
      '--policy <file>',
      'enrollment policy YAML for tokens issued by the service (or POLLEN_ENROLLMENT_POLICY)',
    )
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
    .option('--smtp-url <url>', 'SMTP relay for e-mail notifications, smtp://HOST:PORT (or POLLEN_SMTP_URL)')
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
        const keys = o.apiKeyFile.map((f) => readFileSync(f, 'utf8').trim());
        const envKey = fromEnv(undefined, 'POLLEN_API_KEY');
        if (envKey) keys.push(envKey);
        const port = Number(o.port);
        if (!Number.isInteger(port) || port < 0 || port > 65535)
          throw new PollenError('INVALID_ARGUMENT', `--port must be 0-65535 (got ${o.port})`);
        const running = await startCertService({
          caDir: requireCaPath(o.ca),
          workspace: o.workspace,
          database: o.database,
          host: o.host,
          port,
          apiKeys: keys,
          policyFile: fromEnv(o.policy, 'POLLEN_ENROLLMENT_POLICY'),
          acceptPolicyFiles: o.acceptPolicy,
          hostnames: o.hostname.length ? o.hostname : undefined,
          siteValidityDays: Number(o.siteValidity),
          trustProxy: o.trustProxy,
          smtpUrl: fromEnv(o.smtpUrl, 'POLLEN_SMTP_URL'),
          smtpFrom: o.smtpFrom,
          adminEmail: o.adminEmail,
          logger: pino({ level: o.logLevel }, pino.destination(2)),
        });
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
        await new Promise<void>((res) => {
          const stop = () => {
            process.off('SIGINT', stop);
            process.off('SIGTERM', stop);
            out.progress('stopping the Certificate Service');
            void running.close().then(res);
          };
          process.on('SIGINT', stop);
          process.on('SIGTERM', stop);
        });
      }),
    );
}
