import { PollenError } from '../../errors.js';
import { auditCheckpointMs } from '../audit/interval.js';
import { untilSignal } from '../command.js';
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
  const { tls } = resolveTls(o, 'server', out);
  const addresses = { fleetAddress: o.fleetAddress, controlAddress: o.controlAddress };
  // Cleartext APIs may only listen on loopback: without TLS the default addresses do.
  if (!tls)
    for (const key of ['fleetAddress', 'controlAddress'] as const)
      if (o.defaulted[key]) addresses[key] = addresses[key].replace(/^0\.0\.0\.0:/, '127.0.0.1:');
  await runSuperLink({ ...o, ...addresses }, out, tls);
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
  const { tls } = resolveTls({ kit: kit.dir }, 'server', quiet);
  await runSuperLink(
    {
      ...env,
      stateDir: `${kit.dir}/local/superlink`,
      fleetAddress: `${host}:${kit.config.listening?.port ?? e.port}`,
      controlAddress: `${host}:${e.adminPort ?? 9093}`,
      certService: env.certService ?? kit.enrollment?.certServiceUrl,
    },
    quiet,
    tls,
  );
  return { status: 'stopped' };
}

async function runSuperLink(o: SuperLinkOptions, out: Output, tls: ParticipantTls['tls']): Promise<void> {
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
  await untilSignal(async () => {
    out.progress('stopping the SuperLink');
    await link.close();
  });
}
