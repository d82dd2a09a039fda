/**
 * The node registry alone, on both backends: key registration, activation, liveness in memory
 * (online for two intervals and a grace), deactivation and unregistration.
 */
import { describe, expect, it } from 'vitest';
import { storeBackends } from '../../test/support/backends.js';
import { expectCode, sshKeyLine as key, linkStates, T0 } from '../../test/support/link-states.js';
import { WriteBatcher } from '../store/batcher.js';
import { NodeRegistry, ONLINE_GRACE_MS } from './node-registry.js';

const HB = 10_000;

describe.each(storeBackends('nodes'))('the node registry on %s', (backend, makeUrl) => {
  const { clock, now, store } = linkStates(backend, makeUrl);
  async function fresh(url?: string) {
    const { db } = await store(url);
    const s = new NodeRegistry(db, new WriteBatcher(db), now);
    await s.load();
    return s;
  }

  it('registers a key once, finds it from any line of the same key, and refuses it twice', async () => {
    const s = await fresh();
    const k = key('alice@site');
    const n = await s.registerNodeKey({ nodeId: 'k1', publicKey: k, name: 'hospital-a' });
    expect(n).toMatchObject({
      nodeId: 'k1',
      registered: true,
      status: 'registered',
      publicKey: k.split(' ').slice(0, 2).join(' '),
    });
    expect(s.isKeyRegistered(k)).toBe('k1');
    expect(s.isKeyRegistered(`${k.split(' ').slice(0, 2).join(' ')} other-comment`)).toBe('k1');
    expect(s.isKeyRegistered(key())).toBeUndefined();
    expect(s.isKeyRegistered('garbage')).toBeUndefined();
    await expectCode(
      s.registerNodeKey({ nodeId: 'k1', publicKey: k, name: 'x' }),
      'NODE_ALREADY_REGISTERED',
      {
        nodeId: 'k1',
      },
    );
    // A key is unique: the same key under another id is refused too.
    await expectCode(
      s.registerNodeKey({ nodeId: 'k2', publicKey: k, name: 'x' }),
      'NODE_ALREADY_REGISTERED',
      {
        nodeId: 'k1',
      },
    );
    await expectCode(
      s.registerNodeKey({ nodeId: 'k3', publicKey: 'not a key!', name: 'x' }),
      'SSH_KEY_INVALID',
    );
    await expectCode(
      s.registerNodeKey({ nodeId: 'k3', publicKey: `ssh-ed25519 ${k.split(' ')[1]}`, name: 'x' }),
      'SSH_KEY_INVALID',
    );
  });

  it('activates, heartbeats in memory, goes offline after 2 intervals + grace, and deactivates', async () => {
    const s = await fresh();
    const n = await s.activateNode({
      nodeId: 'c1',
      name: 'site-c',
      certFingerprint: 'ab:cd',
      heartbeatIntervalMs: HB,
    });
    expect(n).toMatchObject({
      status: 'online',
      registered: false,
      certFingerprint: 'ab:cd',
      lastSeenAt: T0,
    });
    expect(s.onlineNodeIds()).toEqual(['c1']);
    clock.t += 2 * HB + ONLINE_GRACE_MS - 1;
    expect(s.onlineNodeIds()).toEqual(['c1']);
    clock.t += 1;
    expect(s.onlineNodeIds()).toEqual([]);
    expect(s.listNodes()[0]).toMatchObject({ nodeId: 'c1', status: 'offline' });
    expect(s.heartbeat('c1', HB)).toBe(true);
    expect(s.listNodes()[0]).toMatchObject({ status: 'online', lastSeenAt: clock.t });
    expect(s.heartbeat('nope', HB)).toBe(false);
    await s.deactivateNode('c1');
    expect(s.heartbeat('c1', HB)).toBe(false);
    expect(s.onlineNodeIds()).toEqual([]);
    await expectCode(s.deactivateNode('nope'), 'NODE_UNKNOWN', { nodeId: 'nope' });
    await expectCode(() => s.heartbeat('c1', 0), 'INVALID_ARGUMENT');
    // Re-activation (a restarted SuperNode) keeps the id.
    await s.activateNode({ nodeId: 'c1', name: 'site-c', heartbeatIntervalMs: HB });
    expect(s.listNodes()).toEqual([
      expect.objectContaining({ nodeId: 'c1', status: 'online', certFingerprint: 'ab:cd' }),
    ]);
  });

  it('two registrations racing for one id, or for one key, leave one winner and its row intact', async () => {
    const url = await makeUrl();
    // On PostgreSQL two registries on one store (each passes its own in-memory checks, so the
    // store decides); SQLite has one writer, the SuperLink, so one registry races itself.
    const a = await fresh(url);
    const b = backend === 'postgres' ? await fresh(url) : a;
    for (let i = 0; i < 8; i++) {
      const k = key();
      const sameId = await Promise.allSettled([
        a.registerNodeKey({ nodeId: `id${i}`, publicKey: k, name: 'first' }),
        b.registerNodeKey({ nodeId: `id${i}`, publicKey: k, name: 'second' }),
      ]);
      expect(sameId.map((x) => x.status).sort()).toEqual(['fulfilled', 'rejected']);
      const lost = sameId.find((x) => x.status === 'rejected') as PromiseRejectedResult;
      expect(lost.reason).toMatchObject({ code: 'NODE_ALREADY_REGISTERED' });
      const won = sameId.find((x) => x.status === 'fulfilled') as PromiseFulfilledResult<{ name: string }>;
      // The loser wrote nothing: the stored row is the winner's.
      expect((await fresh(url)).getNode(`id${i}`)).toMatchObject({ name: won.value.name, registered: true });

      const k2 = key();
      const sameKey = await Promise.allSettled([
        a.registerNodeKey({ nodeId: `x${i}`, publicKey: k2, name: 'x' }),
        b.registerNodeKey({ nodeId: `y${i}`, publicKey: k2, name: 'y' }),
      ]);
      expect(sameKey.map((x) => x.status).sort()).toEqual(['fulfilled', 'rejected']);
      expect((sameKey.find((x) => x.status === 'rejected') as PromiseRejectedResult).reason).toMatchObject({
        code: 'NODE_ALREADY_REGISTERED',
      });
      expect((await fresh(url)).isKeyRegistered(k2)).toMatch(/^[xy]\d$/);
    }
  });

  it('a registered node keeps its admin-given name; an unregistered one can no longer activate', async () => {
    const s = await fresh();
    const k = key();
    await s.registerNodeKey({ nodeId: 'k1', publicKey: k, name: 'admin-name' });
    const n = await s.activateNode({ nodeId: 'k1', name: 'self-name', heartbeatIntervalMs: HB });
    expect(n).toMatchObject({ name: 'admin-name', registered: true, status: 'online' });
    await s.unregisterNode('k1');
    expect(s.isKeyRegistered(k)).toBeUndefined();
    expect(s.heartbeat('k1', HB)).toBe(false);
    expect(s.listNodes()[0]).toMatchObject({ registered: false, status: 'unregistered' });
    await expectCode(
      s.activateNode({ nodeId: 'k1', name: 'x', heartbeatIntervalMs: HB }),
      'NODE_NOT_REGISTERED',
    );
    await expectCode(s.unregisterNode('k1'), 'NODE_NOT_REGISTERED');
    await expectCode(s.unregisterNode('nope'), 'NODE_UNKNOWN');
    // An admin may register it again.
    await s.registerNodeKey({ nodeId: 'k1', publicKey: k, name: 'admin-name' });
    expect(s.isKeyRegistered(k)).toBe('k1');
    await s.activateNode({ nodeId: 'k1', name: 'x', heartbeatIntervalMs: HB });
    expect(s.onlineNodeIds()).toEqual(['k1']);
  });

  it('writes heartbeats to the store only when flushed, and a new registry reads them back', async () => {
    const url = await makeUrl();
    const s = await fresh(url);
    await s.activateNode({ nodeId: 'n0', name: 'a', heartbeatIntervalMs: HB });
    await s.activateNode({ nodeId: 'n1', name: 'b', heartbeatIntervalMs: HB });
    clock.t += 1_000;
    expect(s.heartbeat('n0', 2 * HB)).toBe(true);
    expect((await fresh(url)).getNode('n0')).toMatchObject({ lastSeenAt: T0 });
    await s.flushLiveness();
    await s.flushLiveness(); // nothing changed since: nothing to write
    const again = await fresh(url);
    expect(again.getNode('n0')).toMatchObject({
      status: 'online',
      lastSeenAt: T0 + 1_000,
      onlineUntil: T0 + 1_000 + 4 * HB + ONLINE_GRACE_MS,
    });
    expect(again.getNode('n1')).toMatchObject({ lastSeenAt: T0, onlineUntil: T0 + 2 * HB + ONLINE_GRACE_MS });
  });

  it('tells why a node can no longer answer an instruction, and nothing while it can', async () => {
    const s = await fresh();
    for (const nodeId of ['live', 'gone', 'left', 'restarted'])
      await s.activateNode({ nodeId, name: nodeId, heartbeatIntervalMs: HB, instanceId: 'p1' });
    await s.registerNodeKey({ nodeId: 'keyed', publicKey: key(), name: 'keyed' });
    await s.activateNode({ nodeId: 'keyed', name: 'keyed', heartbeatIntervalMs: HB });
    await s.unregisterNode('keyed');
    await s.deactivateNode('left');
    const delivered = clock.t;
    clock.t += 10;
    await s.activateNode({ nodeId: 'restarted', name: 'r', heartbeatIntervalMs: HB, instanceId: 'p2' });
    const why = (nodeId: string, deliveredAt: number | null = delivered) =>
      s.unavailable(nodeId, clock.t, deliveredAt, 'm1');
    expect(why('live')).toBeUndefined();
    expect(why('nobody')).toBe('node nobody is unknown');
    expect(why('keyed')).toBe('node keyed was unregistered');
    expect(why('left')).toBe('node left was deactivated');
    expect(why('restarted')).toBe('node restarted restarted and lost instruction m1');
    // Delivered to the new process, or not delivered yet: the restart lost nothing.
    expect(why('restarted', clock.t)).toBeUndefined();
    expect(why('restarted', null)).toBeUndefined();
    for (const nodeId of ['live', 'restarted']) s.heartbeat(nodeId, HB);
    clock.t += 2 * HB + ONLINE_GRACE_MS;
    s.heartbeat('live', HB);
    expect(why('live')).toBeUndefined();
    expect(why('gone')).toBe('node gone went offline');
  });
});
