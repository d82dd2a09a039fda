/**
 * The node registry: SuperNodes known to the SuperLink, their registered keys, site bindings and
 * liveness. One SuperLink process owns the store, so every node is held in memory (rebuilt from
 * the table at open): heartbeats change memory only and are written in batches by
 * `flushLiveness`, and the registered-key map answers every session open without a query.
 */
import { sql } from 'kysely';
import { PollenError } from '../errors.js';
import type { WriteBatcher } from '../store/batcher.js';
import { isUniqueViolation } from '../store/database.js';
import { bindFirstSite, registeredSite, type SiteBinding } from './node-sites.js';
import { CHUNK, checkId, type LinkDb, unknownNode } from './state-common.js';
import type { LinkSchema } from './state-schema.js';

/**
 * A node is online while `now < online_until`, where online_until = last heartbeat + 2 × its
 * heartbeat interval + ONLINE_GRACE_MS: one missed heartbeat is tolerated, and the grace absorbs
 * network delay and the SuperLink's own pauses.
 */
export const ONLINE_GRACE_MS = 5_000;

export type NodeStatus = 'online' | 'offline' | 'registered' | 'unregistered';
export interface NodeInfo {
  nodeId: string;
  name: string;
  /** True while an admin's key registration stands. */
  registered: boolean;
  /**
   * 'registered': key registered by an admin, node never activated; 'unregistered': its key was
   * unregistered, so it is refused (not merely away, as 'offline').
   */
  status: NodeStatus;
  lastSeenAt: number | null;
  onlineUntil: number;
  certFingerprint: string | null;
  /** `TYPE BASE64` of the OpenSSH public key. */
  publicKey: string | null;
  /** The site (client certificate name) the registered key is bound to; null until bound. */
  site: string | null;
  siteBoundAt: number | null;
  /** `admin:NAME` (named at registration) or `first-use`. */
  siteBoundBy: string | null;
  /** The organisation of whoever registered the key; null where none was known. */
  org: string | null;
  /** The organisation (`O=`) of its client certificate at its last activation; null: none. */
  certOrg: string | null;
}

export interface RegisterNodeKeyInput {
  nodeId: string;
  publicKey: string;
  name: string;
  site?: string;
  /** The admin registering (recorded as `admin:NAME` with a named site). */
  by?: string;
  /** The registrant's organisation: the key's organisation for `node.manage`. */
  org?: string;
}

export interface ActivateNodeInput {
  nodeId: string;
  name: string;
  certFingerprint?: string;
  /** The organisation (`O=`) its client certificate names, if any. */
  certOrg?: string;
  heartbeatIntervalMs: number;
  /** The node process (see fleet.proto); a new one marks a restart. */
  instanceId?: string;
}

/** A node as held in memory. */
export interface NodeEntry {
  nodeId: string;
  name: string;
  certFingerprint: string | null;
  publicKey: string | null;
  registered: boolean;
  heartbeatIntervalMs: number;
  onlineUntil: number;
  lastSeenAt: number | null;
  activatedAt: number | null;
  deactivatedAt: number | null;
  site: string | null;
  siteBoundAt: number | null;
  siteBoundBy: string | null;
  org: string | null;
  certOrg: string | null;
  /** The node process seen last (ActivateNode instance_id; memory only). */
  instanceId?: string;
  /** When that process first activated: instructions delivered earlier were lost with the old one. */
  restartedAt?: number;
}

export class NodeRegistry {
  private readonly nodes = new Map<string, NodeEntry>();
  /** Registered public key (`TYPE BASE64`) → node id. */
  private readonly keys = new Map<string, string>();
  /** Nodes whose liveness changed since the last flush. */
  private readonly dirty = new Set<string>();
  private flushing: Promise<void> | undefined;

  constructor(
    private readonly db: LinkDb,
    /** Group commit for the per-node hot writes (activation, deactivation, first-use binding). */
    private readonly batcher: WriteBatcher<LinkSchema>,
    private readonly now: () => number,
  ) {}

  /** Read every node into memory. */
  async load(): Promise<void> {
    for (const r of await this.db.selectFrom('nodes').selectAll().execute()) {
      const n = toEntry(r);
      this.nodes.set(n.nodeId, n);
      if (n.registered && n.publicKey) this.keys.set(n.publicKey, n.nodeId);
    }
  }

  /**
   * Register a SuperNode public key (an admin action). `nodeId` is derived from the key by the
   * caller. With `site` the key opens sessions only under that client certificate name; without,
   * it is bound to the first one that activates with it (`bindSite`).
   */
  async registerNodeKey(input: RegisterNodeKeyInput): Promise<NodeInfo> {
    checkId('nodeId', input.nodeId);
    checkName(input.name);
    if (input.site !== undefined) checkId('site', input.site);
    const key = normalizeKey(input.publicKey);
    if (!key) throw new PollenError('SSH_KEY_INVALID', 'The public key is not an OpenSSH public key line');
    const existing = this.keys.get(key);
    if (existing !== undefined) throw alreadyRegistered(existing);
    const held = this.nodes.get(input.nodeId);
    if (held?.registered && held.publicKey !== key) throw alreadyRegistered(held.nodeId);
    const now = this.now();
    const binding = registeredSite(input.site, input.by, now);
    try {
      await this.db.transaction().execute(async (tx) => {
        const other = await tx
          .selectFrom('nodes')
          .select('node_id')
          .where('public_key', '=', key)
          // Another id with this key, or this id already registered with it (a racing twin).
          .where((eb) => eb.or([eb('node_id', '<>', input.nodeId), eb('registered', '=', 1)]))
          .executeTakeFirst();
        if (other) throw alreadyRegistered(other.node_id);
        const written = await tx
          .insertInto('nodes')
          .values({
            node_id: input.nodeId,
            name: input.name,
            cert_fingerprint: null,
            public_key: key,
            registered: 1,
            heartbeat_interval_ms: 0,
            online_until: 0,
            last_seen_at: null,
            activated_at: null,
            deactivated_at: null,
            created_at: now,
            org: input.org ?? null,
            ...binding,
          })
          .onConflict((oc) =>
            // Registration takes over a row an activation created, never a registered one: on
            // PostgreSQL two racing registrations both pass the select above, and the loser's
            // conflict must then update nothing rather than overwrite the winner.
            oc
              .column('node_id')
              .doUpdateSet({
                name: input.name,
                public_key: key,
                registered: 1,
                org: input.org ?? null,
                ...binding,
              })
              .where('nodes.registered', '=', 0),
          )
          .executeTakeFirst();
        if (Number(written.numInsertedOrUpdatedRows ?? 0) === 0) throw alreadyRegistered(input.nodeId);
      });
    } catch (e) {
      if (isUniqueViolation(e)) throw alreadyRegistered(this.keys.get(key) ?? '');
      throw e;
    }
    const n = held ?? {
      nodeId: input.nodeId,
      certFingerprint: null,
      certOrg: null,
      heartbeatIntervalMs: 0,
      onlineUntil: 0,
      lastSeenAt: null,
      activatedAt: null,
      deactivatedAt: null,
    };
    const entry: NodeEntry = {
      ...n,
      name: input.name,
      publicKey: key,
      registered: true,
      org: input.org ?? null,
      site: binding.site,
      siteBoundAt: binding.site_bound_at,
      siteBoundBy: binding.site_bound_by,
    };
    this.nodes.set(entry.nodeId, entry);
    this.keys.set(key, entry.nodeId);
    return info(entry, now);
  }

  /**
   * The site a registered key is bound to, binding it to `site` if it is not bound yet (its
   * first use). The binding is a compare-and-set in the store: of two activations racing under
   * different certificates, on this SuperLink or on another sharing the store, one binds and the
   * other reads that binding back. The caller refuses when the answer is not its site.
   */
  async bindSite(nodeId: string, site: string): Promise<SiteBinding> {
    checkId('site', site);
    const n = this.nodes.get(nodeId);
    if (!n?.registered) throw notRegistered(nodeId);
    if (n.site !== null) return { site: n.site, boundNow: false };
    const stored = await bindFirstSite(this.db, this.batcher, nodeId, site, this.now());
    if (!stored) throw notRegistered(nodeId);
    const { boundNow, ...binding } = stored;
    Object.assign(n, binding);
    return { site: binding.site, boundNow };
  }

  /** Withdraw a key registration: the node is deactivated and can no longer activate. */
  async unregisterNode(nodeId: string): Promise<void> {
    const n = this.nodes.get(nodeId);
    if (!n) throw unknownNode(nodeId);
    if (!n.registered) throw notRegistered(nodeId);
    const now = this.now();
    await this.db
      .updateTable('nodes')
      .set({ registered: 0, deactivated_at: now, online_until: now })
      .where('node_id', '=', nodeId)
      .execute();
    n.registered = false;
    n.deactivatedAt = now;
    n.onlineUntil = now;
    if (n.publicKey) this.keys.delete(n.publicKey);
  }

  /** The node id of a registered key, from memory (this is checked on every session open). */
  isKeyRegistered(publicKeyLine: string): string | undefined {
    const key = normalizeKey(publicKeyLine);
    return key ? this.keys.get(key) : undefined;
  }

  /**
   * A node starts (or restarts) a session. An unknown node is created (certificate-only mode: the
   * caller has authenticated it); a node whose key registration was withdrawn is refused. A
   * registered node keeps the admin-given name.
   */
  async activateNode(input: ActivateNodeInput): Promise<NodeInfo> {
    checkId('nodeId', input.nodeId);
    checkName(input.name);
    checkInterval(input.heartbeatIntervalMs);
    const n = this.nodes.get(input.nodeId);
    if (n && n.publicKey !== null && !n.registered)
      throw new PollenError('NODE_NOT_REGISTERED', `Node ${input.nodeId} is no longer registered`, {
        data: { nodeId: input.nodeId },
      });
    const now = this.now();
    const entry: NodeEntry = {
      nodeId: input.nodeId,
      name: n?.registered ? n.name : input.name,
      certFingerprint: input.certFingerprint ?? n?.certFingerprint ?? null,
      publicKey: n?.publicKey ?? null,
      registered: n?.registered ?? false,
      heartbeatIntervalMs: input.heartbeatIntervalMs,
      onlineUntil: onlineUntil(now, input.heartbeatIntervalMs),
      lastSeenAt: now,
      activatedAt: now,
      deactivatedAt: null,
      site: n?.site ?? null,
      siteBoundAt: n?.siteBoundAt ?? null,
      siteBoundBy: n?.siteBoundBy ?? null,
      org: n?.org ?? null,
      certOrg: input.certOrg ?? null,
      instanceId: input.instanceId || n?.instanceId,
      restartedAt:
        input.instanceId && n?.instanceId !== undefined && n.instanceId !== input.instanceId
          ? now
          : n?.restartedAt,
    };
    await this.batcher.run((tx) =>
      tx
        .insertInto('nodes')
        .values({
          node_id: entry.nodeId,
          name: entry.name,
          cert_fingerprint: entry.certFingerprint,
          public_key: entry.publicKey,
          registered: entry.registered ? 1 : 0,
          heartbeat_interval_ms: entry.heartbeatIntervalMs,
          online_until: entry.onlineUntil,
          last_seen_at: now,
          activated_at: now,
          deactivated_at: null,
          created_at: now,
          cert_org: entry.certOrg,
        })
        .onConflict((oc) =>
          oc.column('node_id').doUpdateSet({
            name: entry.name,
            cert_fingerprint: entry.certFingerprint,
            cert_org: entry.certOrg,
            heartbeat_interval_ms: entry.heartbeatIntervalMs,
            online_until: entry.onlineUntil,
            last_seen_at: now,
            activated_at: now,
            deactivated_at: null,
          }),
        )
        .execute(),
    );
    this.nodes.set(entry.nodeId, entry);
    return info(entry, now);
  }

  /** In memory only (flushed in batches): false if the node is unknown or not active. */
  heartbeat(nodeId: string, heartbeatIntervalMs: number): boolean {
    checkInterval(heartbeatIntervalMs);
    const n = this.nodes.get(nodeId);
    if (!n || !isActive(n)) return false;
    const now = this.now();
    n.lastSeenAt = now;
    n.heartbeatIntervalMs = heartbeatIntervalMs;
    n.onlineUntil = onlineUntil(now, heartbeatIntervalMs);
    this.dirty.add(nodeId);
    return true;
  }

  /** The node ended its session: offline at once. */
  async deactivateNode(nodeId: string): Promise<void> {
    const n = this.nodes.get(nodeId);
    if (!n) throw unknownNode(nodeId);
    const now = this.now();
    // Group commit: a thousand nodes leaving together share a few commits.
    await this.batcher.run((tx) =>
      tx
        .updateTable('nodes')
        .set({ deactivated_at: now, online_until: now })
        .where('node_id', '=', nodeId)
        .execute(),
    );
    n.deactivatedAt = now;
    n.onlineUntil = now;
  }

  listNodes(): NodeInfo[] {
    const now = this.now();
    return [...this.nodes.values()].map((n) => info(n, now));
  }

  onlineNodeIds(): string[] {
    const now = this.now();
    const out: string[] = [];
    for (const n of this.nodes.values()) if (isOnline(n, now)) out.push(n.nodeId);
    return out;
  }

  getNode(nodeId: string): NodeInfo | undefined {
    const n = this.nodes.get(nodeId);
    return n ? info(n, this.now()) : undefined;
  }

  /** The node as held in memory, read-only (the message queue's view: no copy on a hot path). */
  peek(nodeId: string): Readonly<NodeEntry> | undefined {
    return this.nodes.get(nodeId);
  }

  /**
   * Why the instruction `messageId`, delivered to `nodeId` at `deliveredAt` (null: not yet), can
   * no longer be answered by that node; undefined while it still can.
   */
  unavailable(
    nodeId: string,
    now: number,
    deliveredAt: number | null,
    messageId: string,
  ): string | undefined {
    const n = this.nodes.get(nodeId);
    if (!n) return `node ${nodeId} is unknown`;
    if (n.publicKey !== null && !n.registered) return `node ${nodeId} was unregistered`;
    if (n.deactivatedAt !== null) return `node ${nodeId} was deactivated`;
    if (!isOnline(n, now)) return `node ${nodeId} went offline`;
    if (deliveredAt !== null && n.restartedAt !== undefined && deliveredAt < n.restartedAt)
      return `node ${nodeId} restarted and lost instruction ${messageId}`;
    return undefined;
  }

  /** Write changed liveness (online_until, last_seen_at, interval) in one transaction. */
  async flushLiveness(): Promise<void> {
    while (this.flushing) await this.flushing.catch(() => {});
    if (this.dirty.size === 0) return;
    const ids = [...this.dirty];
    this.dirty.clear();
    const rows = ids.flatMap((id) => {
      const n = this.nodes.get(id);
      return n ? [n] : [];
    });
    this.flushing = this.db
      .transaction()
      .execute(async (tx) => {
        for (let i = 0; i < rows.length; i += CHUNK) {
          const values = rows
            .slice(i, i + CHUNK)
            .map(
              (n) =>
                sql`(${n.nodeId}, CAST(${n.onlineUntil} AS BIGINT), CAST(${n.lastSeenAt} AS BIGINT), CAST(${n.heartbeatIntervalMs} AS BIGINT))`,
            );
          // VALUES columns are named column1… on both backends.
          await sql`UPDATE nodes SET online_until = v.column2, last_seen_at = v.column3,
            heartbeat_interval_ms = v.column4 FROM (VALUES ${sql.join(values)}) AS v
            WHERE nodes.node_id = v.column1`.execute(tx);
        }
      })
      .catch((e) => {
        for (const id of ids) this.dirty.add(id);
        throw e;
      });
    try {
      await this.flushing;
    } finally {
      this.flushing = undefined;
    }
  }
}

/** True while the node's session stands: activated, not deactivated, its key (if any) registered. */
export function isActive(n: Readonly<NodeEntry>): boolean {
  return n.activatedAt !== null && n.deactivatedAt === null && (n.publicKey === null || n.registered);
}

function isOnline(n: Readonly<NodeEntry>, now: number): boolean {
  return isActive(n) && now < n.onlineUntil;
}

function nodeStatus(n: Readonly<NodeEntry>, now: number): NodeStatus {
  if (isOnline(n, now)) return 'online';
  if (n.publicKey !== null && !n.registered) return 'unregistered';
  return n.registered && n.activatedAt === null ? 'registered' : 'offline';
}

function onlineUntil(at: number, intervalMs: number): number {
  return at + 2 * intervalMs + ONLINE_GRACE_MS;
}

function info(n: NodeEntry, now: number): NodeInfo {
  return {
    nodeId: n.nodeId,
    name: n.name,
    registered: n.registered,
    status: nodeStatus(n, now),
    lastSeenAt: n.lastSeenAt,
    onlineUntil: n.onlineUntil,
    certFingerprint: n.certFingerprint,
    publicKey: n.publicKey,
    site: n.site,
    siteBoundAt: n.siteBoundAt,
    siteBoundBy: n.siteBoundBy,
    org: n.org,
    certOrg: n.certOrg,
  };
}

/** `TYPE BASE64` of an OpenSSH public key line (the comment is not part of the key), or undefined. */
export function normalizeKey(line: string): string | undefined {
  if (typeof line !== 'string') return undefined;
  const [type, data] = line.trim().split(/\s+/);
  if (!type || !data || !/^[a-z0-9][a-z0-9@.-]*$/i.test(type) || !/^[A-Za-z0-9+/]+={0,2}$/.test(data))
    return undefined;
  // The key blob starts with its own type as an SSH string: a cheap check that this is a key.
  const blob = Buffer.from(data, 'base64');
  if (blob.length < 4 || blob.subarray(4, 4 + blob.readUInt32BE(0)).toString('latin1') !== type)
    return undefined;
  return `${type} ${data}`;
}

function toEntry(r: LinkSchema['nodes']): NodeEntry {
  return {
    nodeId: r.node_id,
    name: r.name,
    certFingerprint: r.cert_fingerprint,
    publicKey: r.public_key,
    registered: Number(r.registered) === 1,
    heartbeatIntervalMs: r.heartbeat_interval_ms,
    onlineUntil: r.online_until,
    lastSeenAt: r.last_seen_at,
    activatedAt: r.activated_at,
    deactivatedAt: r.deactivated_at,
    site: r.site,
    siteBoundAt: r.site_bound_at,
    siteBoundBy: r.site_bound_by,
    org: r.org,
    certOrg: r.cert_org,
  };
}

function checkName(v: unknown): void {
  if (typeof v !== 'string' || v.length > 256)
    throw new PollenError('INVALID_ARGUMENT', 'A node name must be a string of at most 256 characters');
}

function checkInterval(ms: unknown): void {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms <= 0 || ms > 24 * 3_600_000)
    throw new PollenError(
      'INVALID_ARGUMENT',
      'The heartbeat interval must be a positive number of milliseconds',
    );
}

function notRegistered(nodeId: string): PollenError {
  return new PollenError('NODE_NOT_REGISTERED', `Node ${nodeId} has no registered key`, { data: { nodeId } });
}

function alreadyRegistered(nodeId: string): PollenError {
  return new PollenError(
    'NODE_ALREADY_REGISTERED',
    `This public key is already registered as node ${nodeId}`,
    {
      data: { nodeId },
    },
  );
}
