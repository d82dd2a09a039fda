/**
 * Where `pollen audit` reads a trail: a SuperLink's Audit API (a connection entry, as every
 * Control command) or a Certificate Service's admin API (--cert-service). Both give entries and
 * checkpoints; the root that checkpoints must chain to comes from the connection entry (its root
 * certificate or kit) or --ca-cert.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Checkpoint } from '../../audit/checkpoint.js';
import type { ListedEntry } from '../../audit/entry.js';
import { checkpointFromWire, entryFromWire } from '../../audit/wire.js';
import type { AuditQuery } from '../../enrollment/cert-service-client.js';
import { rpc } from '../../transport/errors.js';
import { type CredentialFlags, withControl } from '../control-client.js';
import type { ServiceOptions } from '../enrollment/admin-client.js';

export interface AuditSourceOptions extends ServiceOptions, CredentialFlags {
  /** The SuperLink's connection entry (the global --superlink; default: the default one). */
  superlink?: string;
}

export interface AuditSource {
  /** What is read, for messages: `SuperLink lab`, `Certificate Service https://…`. */
  name: string;
  /** The project root checkpoints must chain to, where known. */
  root: string | undefined;
  entries(q: AuditQuery): Promise<ListedEntry[]>;
  checkpoints(after: number, limit: number): Promise<Checkpoint[]>;
}

/** Read a trail from the source the options name, for `fn`. */
export async function withAuditSource<T>(
  f: AuditSourceOptions,
  fn: (s: AuditSource) => Promise<T>,
): Promise<T> {
  if (f.certService) {
    // Loaded here: a SuperLink's trail needs neither the HTTPS client nor the login code.
    const { withClient } = await import('../enrollment/admin-client.js');
    return withClient(f, (c) =>
      fn({
        name: `Certificate Service ${f.certService}`,
        root: rootOf(f),
        entries: (q) => c.audit(q),
        checkpoints: (after, limit) => c.auditCheckpoints(after, limit),
      }),
    );
  }
  return withControl(undefined, f, (s) =>
    fn({
      name: `SuperLink ${s.connection.name}`,
      root: s.connection.tls?.ca,
      async entries(q) {
        const res = await rpc(
          s.audit.listAudit({
            afterSeq: BigInt(q.after ?? 0),
            limit: q.limit ?? 1000,
            sinceMs: BigInt(q.since?.getTime() ?? 0),
            actor: q.actor ?? '',
            federation: q.federation ?? '',
            redacted: q.redacted ?? false,
          }),
        );
        return res.entries.map(entryFromWire);
      },
      async checkpoints(after, limit) {
        const res = await rpc(s.audit.getCheckpoints({ afterSeq: BigInt(after), limit }));
        return res.checkpoints.map(checkpointFromWire);
      },
    }),
  );
}

function rootOf(f: ServiceOptions): string | undefined {
  const path = f.caCert ?? (f.ca ? join(f.ca, 'rootCA.pem') : undefined);
  return path ? readFileSync(path, 'utf8') : undefined;
}

/** Read pages of `page` until one comes back short (at most `maxPages`). */
export async function readAll<T extends { seq: number }>(
  read: (after: number, limit: number) => Promise<T[]>,
  page = 1000,
  maxPages = 10_000,
): Promise<T[]> {
  const all: T[] = [];
  for (let i = 0; i < maxPages; i++) {
    const batch = await read(all.at(-1)?.seq ?? 0, page);
    all.push(...batch);
    if (batch.length < page) break;
  }
  return all;
}
