/**
 * The SuperLink's metrics and health: what its gauges read (link-state counts, queues, chunk
 * memory, its certificate, the CRL) and its readiness checks, served on the ops listener.
 */
import type { Registry } from 'prom-client';
import { componentRegistry, notAfterOf } from '../observability/registry.js';
import { RpcMetrics } from '../observability/rpc-metrics.js';
import { SuperLinkMetrics, type SuperLinkReadings } from '../observability/superlink-metrics.js';
import { DEFAULT_FEDERATION } from './federations.js';
import type { Link } from './link.js';
import type { ByteBudget } from './quotas.js';
import type { RevocationList } from './revocation.js';

export interface SuperLinkTelemetry {
  readonly registry: Registry;
  readonly rpc: RpcMetrics;
  readonly runs: SuperLinkMetrics;
}

/** The SuperLink's registry with every metric; gauges read `link` and the rest at scrape time. */
export function superLinkTelemetry(o: {
  link: Link;
  disk: ByteBudget;
  certificate?: string;
  revocations?: RevocationList;
}): SuperLinkTelemetry {
  const { link, disk, revocations } = o;
  const { state } = link;
  const registry = componentRegistry('superlink');
  const readings: SuperLinkReadings = {
    *nodes() {
      for (const node of state.listNodes())
        yield { status: node.status, federations: [DEFAULT_FEDERATION, ...state.federations.servedBy(node)] };
    },
    runsByState: () => state.countRunsByState(),
    queueDepth: () => ({ instructions: state.queuedInstructions(), replies: link.replyQueues.total }),
    chunkMemory: () => link.relay.memory,
    chunkDisk: () => ({ used: disk.used, limit: disk.limit }),
    ...(o.certificate && { certificateNotAfter: notAfterOf(o.certificate) }),
    crl: () =>
      revocations && revocations.thisUpdate > 0
        ? { thisUpdate: revocations.thisUpdate, entries: revocations.size }
        : undefined,
  };
  return { registry, rpc: new RpcMetrics(registry), runs: new SuperLinkMetrics(registry, readings) };
}
