import cluster from 'node:cluster';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CertServiceConfig } from '../../enrollment/service/server.js';
import { PollenError } from '../../errors.js';
import { auditCheckpointMs } from '../audit/interval.js';
import { requireCaPath, untilSignal } from '../command.js';
import type { IdentityFlags } from '../identity-options.js';
import { opsListen } from '../metrics-address.js';
import { bold, dim, type Output } from '../output.js';
import { proxyProtocolFrom } from '../proxy-protocol-from.js';
import { runWorkers } from './workers.js';

export interface CertServiceOptions extends IdentityFlags {
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
  auditCheckpointInterval?: string;
  /** Addresses or CIDRs of trusted reverse proxies (never "any hop"). */
  trustProxy?: string;
  proxyProtocolFrom?: string;
  logLevel: string;
  metricsAddress?: string;
  logFormat?: string;
  workers: string;
  smtpUrl?: string;
  smtpFrom?: string;
  adminEmail?: string;
}

/** `pollen cert-service`: run the Certificate Service (one process, or --workers of them) until a signal. */
export async function certService(o: CertServiceOptions, out: Output): Promise<void> {
  // Loaded here, not at start-up: the server stack (fastify, SQL drivers) is the CLI's heaviest part.
  const { createLogger } = await import('../../observability/log.js');
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
  const metrics = opsListen(o.metricsAddress);
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
    auditCheckpointMs: auditCheckpointMs(o.auditCheckpointInterval),
    trustProxy: o.trustProxy,
    proxyProtocol: proxyProtocolFrom(o.proxyProtocolFrom),
    smtpUrl: o.smtpUrl,
    smtpFrom: o.smtpFrom,
    adminEmail: o.adminEmail,
    identityConfig: o.identityConfig,
    accessPolicyFile: o.accessPolicy,
    logger: createLogger({ level: o.logLevel, format: o.logFormat }),
    // With workers, the primary serves the ops listener and the sum of their metrics.
    metrics: metrics && cluster.isWorker ? 'worker' : metrics,
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
      metrics: running.opsUrl ?? null,
    },
    (d) => [
      `${bold('Certificate Service')} listening on ${d.url}`,
      `  root fingerprint  ${d.rootFingerprint}`,
      `  store             ${d.database}`,
      `  metrics/health    ${d.metrics ?? 'off'}`,
      dim('  Ctrl-C to stop'),
    ],
  );
  await untilSignal(() => {
    out.progress('stopping the Certificate Service');
    return running.close();
  });
}
