import { PollenError } from '../../errors.js';
import { watchFiles } from '../../util/file-changes.js';
import { auditCheckpointMs } from '../audit/interval.js';
import { untilSignalOr } from '../command.js';
import type { IdentityFlags } from '../identity-options.js';
import { opsListen } from '../metrics-address.js';
import { bold, dim, type Output } from '../output.js';
import { type ParticipantTls, parseAddress, resolveTls, type TlsFlags } from '../participant-tls.js';
import type { ParticipantContext, ParticipantOutcome } from '../participants.js';
import { proxyProtocolFrom } from '../proxy-protocol-from.js';
import { limitsFrom } from './limits.js';

/** The options of `pollen superlink` (the limits' options too, by their keys: limits.ts). */
export interface SuperLinkOptions extends TlsFlags, IdentityFlags {
  stateDir: string;
  database?: string;
  fleetAddress: string;
  controlAddress: string;
  serverappioAddress: string;
  enableSupernodeAuth?: boolean;
  crl?: string;
  crlRefresh?: string;
  chunkMemory?: string;
  auditCheckpointInterval?: string;
  certService?: string;
  project?: string;
  python?: string;
  proxyProtocolFrom?: string;
  metricsAddress?: string;
  logLevel: string;
  logFormat?: string;
}

export interface SuperLinkCommandOptions extends SuperLinkOptions {
  /** Which API addresses are their defaults (not given): without TLS they move to loopback. */
  defaulted: { fleetAddress: boolean; controlAddress: boolean };
}

/** `pollen superlink`: run the SuperLink until a signal stops it. */
export async function superLink(o: SuperLinkCommandOptions, out: Output): Promise<void> {
  const participant = resolveTls(o, 'server', out);
  const { tls } = participant;
  const addresses = { fleetAddress: o.fleetAddress, controlAddress: o.controlAddress };
  // Cleartext APIs may only listen on loopback: without TLS the default addresses do.
  if (!tls)
    for (const key of ['fleetAddress', 'controlAddress'] as const)
      if (o.defaulted[key]) addresses[key] = addresses[key].replace(/^0\.0\.0\.0:/, '127.0.0.1:');
  await runSuperLink({ ...o, ...addresses }, out, participant);
}

/**
 * `pollen start SERVER_KIT`, once enrolled: the SuperLink on the kit's ports, with the settings
 * `pollen superlink` takes from the environment (`env`).
 */
export async function runKitSuperLink(
  { kit, out }: ParticipantContext,
  env: SuperLinkOptions,
): Promise<ParticipantOutcome> {
  const e = kit.config.endpoint;
  const host = kit.config.listening?.host ?? '0.0.0.0';
  const quiet = out.quiet();
  await runSuperLink(
    {
      ...env,
      stateDir: `${kit.dir}/local/superlink`,
      fleetAddress: `${host}:${kit.config.listening?.port ?? e.port}`,
      controlAddress: `${host}:${e.adminPort ?? 9093}`,
      certService: env.certService ?? kit.enrollment?.certServiceUrl,
    },
    quiet,
    resolveTls({ kit: kit.dir }, 'server', quiet),
  );
  return { status: 'stopped' };
}

/** How often the SuperLink looks for a rotated certificate in its files. */
const TLS_CHECK_MS = Number(process.env['POLLEN_TLS_RELOAD_CHECK_MS'] ?? 5_000);

async function runSuperLink(o: SuperLinkOptions, out: Output, participant: ParticipantTls): Promise<void> {
  const { tls, source } = participant;
  const { createLogger } = await import('../../observability/log.js');
  const { startSuperLink } = await import('../../superlink/superlink.js');
  const log = createLogger({ level: o.logLevel, format: o.logFormat });
  const refresh = Number(o.crlRefresh ?? 30);
  if (!Number.isFinite(refresh) || refresh < 1)
    throw new PollenError('INVALID_ARGUMENT', '--crl-refresh takes seconds (>= 1)');
  const chunkMemory = Number(o.chunkMemory ?? 1024);
  if (!Number.isFinite(chunkMemory) || chunkMemory < 0)
    throw new PollenError(
      'INVALID_ARGUMENT',
      '--chunk-memory takes MiB (>= 0; 0 keeps every chunk in files)',
    );
  const limits = limitsFrom(o as unknown as Record<string, unknown>);
  const proxyProtocol = proxyProtocolFrom(o.proxyProtocolFrom);
  const { serviceIdentity } = await import('../../identity/service-identity.js');
  const people = serviceIdentity(o);
  const link = await startSuperLink({
    stateDir: o.stateDir,
    chunkMemoryBytes: Math.floor(chunkMemory * 1024 * 1024),
    auditCheckpointMs: auditCheckpointMs(o.auditCheckpointInterval),
    limits,
    database: o.database,
    fleet: parseAddress(o.fleetAddress, '--fleet-address'),
    control: parseAddress(o.controlAddress, '--control-address'),
    serverAppIo: parseAddress(o.serverappioAddress, '--serverappio-address'),
    metrics: opsListen(o.metricsAddress),
    tls,
    nodeAuth: Boolean(o.enableSupernodeAuth),
    project: o.project,
    crl: o.crl || o.certService ? { file: o.crl, url: o.certService, refreshMs: refresh * 1000 } : undefined,
    accessPolicy: people.accessPolicy,
    ...(people.oidc && { oidc: people.oidc }),
    ...(people.tokens && { tokens: people.tokens }),
    ...(o.python !== undefined && { python: o.python }),
    ...(proxyProtocol && { proxyProtocol }),
    log,
  });
  out.result(
    {
      fleet: link.fleetUrl,
      control: link.controlUrl,
      serverAppIo: link.serverAppIoUrl,
      metrics: link.opsUrl ?? null,
      nodeAuth: Boolean(o.enableSupernodeAuth),
      secure: Boolean(tls),
    },
    (d) => [
      `${bold('SuperLink')} running${d.secure ? ' (mutual TLS)' : ' (INSECURE)'}`,
      `  Fleet API       ${d.fleet}${d.nodeAuth ? '  (registered node keys only)' : ''}`,
      `  Control API     ${d.control}`,
      `  ServerAppIo     ${d.serverAppIo}`,
      `  Metrics/health  ${d.metrics ?? 'off'}`,
      dim('  Ctrl-C to stop'),
    ],
  );
  // A rotated certificate (`pollen cert rotate superlink`, a renewal, `cert site --force`) is
  // presented to new connections within seconds; open connections and runs carry on.
  const stopWatching = source
    ? watchFiles(source.files, TLS_CHECK_MS, () => {
        try {
          link.useTls(source.read());
          log.info({ files: source.files }, 'took up a rotated TLS certificate');
        } catch (err) {
          log.error({ err }, 'could not take up the rotated TLS certificate; the old one is still served');
        }
      })
    : () => undefined;
  // A SuperLink that lost its store lease has stopped by itself: exit with STORE_LEASE_LOST so
  // systemd or Kubernetes restart it (the new start waits for the lease).
  const ended = await untilSignalOr(link.leaseLost);
  stopWatching();
  if ('value' in ended) throw ended.value;
  out.progress('stopping the SuperLink');
  await link.close();
}
