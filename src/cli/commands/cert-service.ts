import type { Command } from 'commander';
import { AUDIT_CHECKPOINT_HELP } from '../audit/interval.js';
import type { CertServiceOptions } from '../cert-service/serve.js';
import { action, lazy } from '../command.js';
import {
  addLogOptions,
  apiKeyOption,
  caOption,
  METRICS_ADDRESSES,
  metricsAddressOption,
  policyOption,
  proxyProtocolOption,
  smtpUrlOption,
} from '../env-options.js';
import { addIdentityOptions } from '../identity-options.js';

const certService = lazy(() => import('../cert-service/serve.js'), 'certService');

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function registerCertService(program: Command): void {
  const cmd = program
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
    .option('--audit-checkpoint-interval <seconds>', AUDIT_CHECKPOINT_HELP)
    .option(
      '--trust-proxy <addresses>',
      'comma-separated addresses/CIDRs of reverse proxies whose X-Forwarded-For gives the client address',
    )
    .addOption(proxyProtocolOption('the service'))
    .addOption(metricsAddressOption(METRICS_ADDRESSES.certService))
    .option(
      '--workers <n>',
      'processes serving the port together (use the cores of the host; SQLite or PostgreSQL)',
      '1',
    )
    .addOption(smtpUrlOption())
    .option('--smtp-from <address>', 'sender of notification e-mails', 'pollen@localhost')
    .option('--admin-email <address>', 'recipient when a policy enables e-mail without listing recipients');
  addLogOptions(addIdentityOptions(cmd))
    .addHelpText(
      'after',
      `
Examples:
  pollen cert api-key -o api_key.txt
  pollen cert-service -c ./ca --api-key-file api_key.txt --hostname certs.example.com
  pollen cert-service -c ./ca --api-key-file api_key.txt --database postgres://pollen@db:5432/pollen

The service keeps only the SHA-256 of each API key. Logs go to stderr: JSON lines (pino) or, on a terminal, pretty (--log-format).
Stop it with Ctrl-C or SIGTERM: it finishes the requests in flight, then exits.`,
    )
    .action(action<CertServiceOptions>(certService));
}
