import { createHash, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import type { Server } from 'node:net';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { AggregatorRegistry } from 'prom-client';
import { PollenError } from '../../errors.js';
import { serviceIdentity } from '../../identity/service-identity.js';
import { createLogger } from '../../observability/log.js';
import { type OpsServer, startOpsServer } from '../../observability/ops-server.js';
import { CA_FILES, loadCa } from '../../pki/ca.js';
import { describeKey } from '../../pki/keys.js';
import { issueSiteCertificate } from '../../pki/profiles.js';
import { openDatabase } from '../../store/database.js';
import { listenFailure } from '../../transport/listen-failure.js';
import { type ProxyProtocolOptions, proxyProtocolFront } from '../../transport/proxy-listener.js';
import { watchFiles } from '../../util/file-changes.js';
import { writeFileAtomic, writeSecretFile } from '../../util/files.js';
import { loadPolicy } from '../policy-load.js';
import { loadTokenSigner, CA_FILES as TOKEN_CA_FILES } from '../token.js';
import { RETIRED_TOKEN_KEYS_FILE, retiredTokenVerificationKeys } from '../token-retired.js';
import { buildApp } from './app.js';
import { Notifier } from './notifier.js';
import { certServiceTelemetry } from './ops.js';
import { type EnrollmentSchema, enrollmentMigrations } from './schema.js';
import { CertificateService } from './service.js';

export interface CertServiceConfig {
  /** CA folder: intermediate key and certificate, root certificate, token key. */
  caDir: string;
  /** Where the service keeps its state (SQLite file, its TLS certificate). */
  workspace: string;
  /** Store URL; default SQLite in the workspace. */
  database?: string;
  host?: string;
  port?: number;
  /** Admin API keys (plain, hashed at once) and/or their SHA-256 hashes. */
  apiKeys?: string[];
  apiKeyHashes?: string[];
  policyFile?: string;
  /** Earlier policy files whose outstanding tokens stay valid. */
  acceptPolicyFiles?: string[];
  hostnames?: string[];
  siteValidityDays?: number;
  /** Addresses or CIDRs of trusted reverse proxies (never "any hop"). */
  trustProxy?: string;
  /**
   * Behind a TCP proxy passing TLS through (`--proxy-protocol-from`): its PROXY header names the
   * client, whose address `source_ips` rules, the audit trail and logs then see.
   */
  proxyProtocol?: ProxyProtocolOptions;
  logger?: Logger | false;
  /** Notification delivery (SMTP relay, default recipients). */
  smtpUrl?: string;
  smtpFrom?: string;
  adminEmail?: string;
  /** TOML file whose `[identity.oidc]` section names the identity provider of login tokens. */
  identityConfig?: string;
  /** Roles × rights YAML (default: the built-in access policy). */
  accessPolicyFile?: string;
  /** How often the tidy job runs; 0 disables it. */
  tidyIntervalMs?: number;
  /** How often the audit trail's head is signed (default 5 minutes; also on stop). */
  auditCheckpointMs?: number;
  /** How often the CA folder and the service certificate are checked for a rotation (default 5 s; 0: never). */
  reloadCheckMs?: number;
  /**
   * Where `/metrics`, `/healthz` and `/readyz` are served (ops-server.ts); `worker`: a worker
   * process of several, whose metrics the primary serves (cert-service/workers.ts). Default: none.
   */
  metrics?: { host: string; port: number } | 'worker';
}

export interface RunningCertService {
  url: string;
  port: number;
  service: CertificateService;
  app: FastifyInstance;
  rootFingerprint: string;
  databaseLocation: string;
  /** Take up rotated CA material, token keys and the service certificate now (also done on change). */
  reload(): Promise<void>;
  /** The ops listener (`/metrics`, `/healthz`, `/readyz`); undefined when off or in a worker. */
  opsUrl: string | undefined;
  close(): Promise<void>;
}

/** Where the service keeps its own TLS certificate and key, in its workspace. */
export function serverCertificatePaths(workspace: string) {
  return {
    cert: join(workspace, 'tls', 'cert-service.crt'),
    key: join(workspace, 'tls', 'cert-service.key'),
    hosts: join(workspace, 'tls', 'hosts.json'),
  };
}

/**
 * The service's own server certificate, issued by the project CA and kept in the workspace;
 * `force` re-issues it now (`pollen cert rotate cert-service`).
 */
export function ensureServerCertificate(
  ca: Awaited<ReturnType<typeof loadCa>>,
  workspace: string,
  hostnames: string[],
  force = false,
): { cert: string; key: string } {
  const { cert: certPath, key: keyPath } = serverCertificatePaths(workspace);
  const hostsPath = join(workspace, 'tls', 'hosts.json'); // also marks certificates made with the service identity
  const wanted = JSON.stringify({ v: 2, hosts: [...hostnames].sort() });
  if (
    !force &&
    existsSync(certPath) &&
    existsSync(keyPath) &&
    existsSync(hostsPath) &&
    readFileSync(hostsPath, 'utf8') === wanted
  ) {
    const cert = readFileSync(certPath, 'utf8');
    const notAfter = new Date(new X509Certificate(cert).validTo); // the leaf comes first
    // Re-issued at two thirds of its 90-day life, like any site certificate.
    if (notAfter.getTime() - Date.now() > 30 * 86_400_000)
      return { cert, key: readFileSync(keyPath, 'utf8') };
  }
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const issued = issueSiteCertificate(
    ca.issuer,
    spki,
    describeKey(publicKey),
    { name: 'cert-service', type: 'server', project: ca.meta.name, hosts: hostnames, service: true },
    90 * 86_400_000,
  );
  const cert = `${issued.pem}${ca.intermediatePem}\n`;
  const key = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  writeSecretFile(keyPath, key);
  writeFileAtomic(certPath, cert);
  writeFileAtomic(hostsPath, wanted);
  return { cert, key };
}

/**
 * `pollen cert rotate cert-service`: a new key and certificate for the service now, for the host
 * names it was started with; a running service presents it to new connections within seconds.
 */
export async function rotateServiceCertificate(caDir: string, workspaceIn: string) {
  const workspace = resolve(workspaceIn);
  const paths = serverCertificatePaths(workspace);
  if (!existsSync(paths.hosts))
    throw new PollenError(
      'FILE_NOT_FOUND',
      `${workspace} is not a Certificate Service workspace (no tls/hosts.json)`,
      {
        hint: 'Give the folder passed to `pollen cert-service serve -w`; the service must have started once.',
      },
    );
  const { hosts } = JSON.parse(readFileSync(paths.hosts, 'utf8')) as { hosts: string[] };
  const ca = await loadCa(caDir);
  const before = existsSync(paths.cert)
    ? new X509Certificate(readFileSync(paths.cert, 'utf8')).serialNumber
    : null;
  const leaf = new X509Certificate(ensureServerCertificate(ca, workspace, hosts, true).cert);
  return {
    certificate: paths.cert,
    serial: leaf.serialNumber.toLowerCase(),
    previousSerial: before?.toLowerCase() ?? null,
    notAfter: new Date(leaf.validTo).toISOString(),
    hosts,
  };
}

/**
 * The URL to announce: one its certificate is valid for (a SAN), so a client that copies it from
 * the banner connects. The listening address when it is a SAN, else the first name.
 */
export function serviceUrl(host: string, hostnames: string[], port: number): string {
  const name = hostnames.includes(host) ? host : (hostnames[0] ?? host);
  return `https://${name.includes(':') ? `[${name}]` : name}:${port}`;
}

/**
 * Do the one-time work of a start (store migrations, policies, the service certificate) without
 * listening: run once before several worker processes start the service on one port.
 */
export async function prepareCertService(c: CertServiceConfig): Promise<void> {
  await startCertService({ ...c, prepareOnly: true });
}

/** Start the Certificate Service: load the CA, open the store, listen with TLS. */
export async function startCertService(
  c: CertServiceConfig & { prepareOnly?: boolean },
): Promise<RunningCertService> {
  const workspace = resolve(c.workspace);
  let ca = await loadCa(c.caDir);
  const tokenSigner = loadTokenSigner(c.caDir);
  const policy = loadPolicy(c.policyFile);
  const people = serviceIdentity({ identityConfig: c.identityConfig, accessPolicy: c.accessPolicyFile });
  const logger = c.logger === undefined ? createLogger({ level: 'info', format: 'json' }) : c.logger;
  const store = await openDatabase<EnrollmentSchema>({
    url: c.database ?? join(workspace, 'cert-service.db'),
    migrations: enrollmentMigrations,
  });
  const hashes = [
    ...(c.apiKeyHashes ?? []),
    ...(c.apiKeys ?? []).map((k) => createHash('sha256').update(k.trim()).digest('hex')),
  ];
  const hostnames = c.hostnames ?? ['localhost', '127.0.0.1', hostname()];
  const tls = ensureServerCertificate(ca, workspace, hostnames);
  let serverCertificate = tls.cert;
  // Audit checkpoints are signed with the service's TLS key (renewed below with the certificate).
  const auditSigner = { component: 'cert-service', key: tls.key, certificate: tls.cert };
  let service: CertificateService;
  try {
    service = await CertificateService.create({
      ca,
      store,
      tokenSigner,
      policy,
      acceptPolicies: (c.acceptPolicyFiles ?? []).map((f) => loadPolicy(f)),
      apiKeyHashes: hashes,
      siteValidityMs: (c.siteValidityDays ?? 30) * 86_400_000,
      notifier: new Notifier({ smtpUrl: c.smtpUrl, smtpFrom: c.smtpFrom, adminEmail: c.adminEmail, logger }),
      accessPolicy: people.accessPolicy,
      ...(people.tokens && { tokens: people.tokens }),
      auditSigner,
      ...(c.auditCheckpointMs !== undefined && { audit: { checkpointEveryMs: c.auditCheckpointMs } }),
    });
  } catch (e) {
    await store.close();
    throw e;
  }
  service.useCredentials({ ca, tokenSigner, retiredTokenKeys: retiredTokenVerificationKeys(c.caDir) });
  if (c.prepareOnly) {
    await service.drain();
    await store.close();
    return undefined as never;
  }
  const tlsOptions = () => ({
    ca: [ca.rootPem, ...ca.intermediatePems],
    requestCert: true, // only /v1/renew uses it; enrollment works without a client certificate
    rejectUnauthorized: false,
    minVersion: 'TLSv1.2' as const,
  });
  const app = buildApp(service, {
    logger: logger || false,
    trustProxy: c.trustProxy,
    https: { ...tls, ...tlsOptions() },
  });
  const host = c.host ?? '0.0.0.0';
  const front = c.proxyProtocol
    ? proxyProtocolFront(app.server, {
        ...c.proxyProtocol,
        onRefused: ({ address, reason }) => {
          if (logger) logger.warn({ event: 'proxy.refused', address, reason }, 'connection refused');
        },
      })
    : undefined;
  let closing = false;
  const registry = c.metrics ? certServiceTelemetry(app, service, store, () => serverCertificate) : undefined;
  let ops: OpsServer | undefined;
  try {
    if (front) await listenFront(app, front, host, c.port ?? 8443);
    else await app.listen({ host, port: c.port ?? 8443 });
    if (registry && c.metrics === 'worker') {
      // Constructing one is what makes a worker answer the primary's requests for its metrics.
      new AggregatorRegistry();
      AggregatorRegistry.setRegistries([registry]);
    } else if (registry && typeof c.metrics === 'object')
      ops = await startOpsServer({
        ...c.metrics,
        metrics: registry,
        checks: {
          store: () => service.ping(),
          ca: () => {
            if (!service.ca.issuer || !service.ca.rootPem) throw new Error('the CA material is not loaded');
          },
          listeners: () => {
            if (closing || !(front ?? app.server).listening) throw new Error('the HTTPS listener is closed');
          },
        },
        ...(logger && { log: logger }),
      });
  } catch (e) {
    await app.close();
    await service.drain();
    await store.close();
    if (e instanceof PollenError) throw e;
    throw listenFailure(e, { host, port: c.port ?? 8443, what: 'the Certificate Service', option: '--port' });
  }
  const port = ((front ?? app.server).address() as { port: number }).port;
  const tidyEvery = c.tidyIntervalMs ?? 3_600_000;
  const timer =
    tidyEvery > 0 ? setInterval(() => void service.tidy().catch(() => undefined), tidyEvery) : undefined;
  timer?.unref();
  // The service's own certificate is renewed while it runs, without dropping connections.
  const useServerCertificate = () => {
    const renewed = ensureServerCertificate(ca, workspace, hostnames);
    (app.server as import('node:https').Server).setSecureContext({ ...renewed, ...tlsOptions() });
    Object.assign(auditSigner, { key: renewed.key, certificate: renewed.cert });
    serverCertificate = renewed.cert;
  };
  const tlsTimer = setInterval(() => {
    try {
      useServerCertificate();
    } catch (err) {
      if (logger) logger.error({ err }, 'could not renew the service certificate');
    }
  }, 6 * 3_600_000);
  tlsTimer.unref();
  // A rotation (`pollen cert rotate`) rewrites these files; each worker takes them up in place.
  const reload = async () => {
    const nextCa = await loadCa(c.caDir);
    const nextSigner = loadTokenSigner(c.caDir);
    service.useCredentials({
      ca: nextCa,
      tokenSigner: nextSigner,
      retiredTokenKeys: retiredTokenVerificationKeys(c.caDir),
    });
    ca = nextCa;
    useServerCertificate();
    if (logger) logger.info({ kid: nextSigner.kid }, 'took up rotated CA material and certificates');
  };
  const caDir = resolve(c.caDir);
  const stopWatching =
    (c.reloadCheckMs ?? 5_000) > 0
      ? watchFiles(
          [
            ...[
              CA_FILES.intermediateCert,
              CA_FILES.chain,
              TOKEN_CA_FILES.tokenKey,
              RETIRED_TOKEN_KEYS_FILE,
            ].map((f) => join(caDir, f)),
            serverCertificatePaths(workspace).cert,
          ],
          c.reloadCheckMs ?? 5_000,
          () =>
            reload().catch((err) => {
              if (logger) logger.error({ err }, 'could not take up the rotated CA material');
            }),
        )
      : () => undefined;
  return {
    url: serviceUrl(host, hostnames, port),
    port,
    service,
    app,
    rootFingerprint: ca.rootFingerprint,
    databaseLocation: store.location,
    reload,
    opsUrl: ops?.url,
    async close() {
      stopWatching();
      closing = true;
      if (timer) clearInterval(timer);
      clearInterval(tlsTimer);
      front?.close();
      await app.close();
      await ops?.close();
      await service.drain();
      await store.close();
    },
  };
}

/** Listen on the PROXY protocol front, which hands each checked connection to Fastify's server. */
async function listenFront(app: FastifyInstance, front: Server, host: string, port: number): Promise<void> {
  await app.ready();
  await new Promise<void>((resolve, reject) => {
    front.once('error', reject);
    front.listen(port, host, () => {
      front.off('error', reject);
      resolve();
    });
  });
}
