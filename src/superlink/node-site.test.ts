/**
 * A registered node key is bound to one site (client certificate name), on both backends: named
 * at registration or bound by its first activation, atomically even when two LinkStates on one
 * store race, kept across a reopen, and brought to keys registered before the binding existed.
 */
import { describe, expect, it } from 'vitest';
import { storeBackends } from '../../test/support/backends.js';
import { sshKeyLine as key, linkStates, T0 } from '../../test/support/link-states.js';
import { openDatabase } from '../store/database.js';
import { type LinkSchema, linkStateMigrations } from './state-schema.js';

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return (e as { code?: string }).code;
  }
}

describe.each(storeBackends('node-site'))('node key sites on %s', (backend, makeUrl) => {
  const { clock, state } = linkStates(backend, makeUrl);

  it('keeps the site named at registration, with who named it, and answers it to any activation', async () => {
    const url = await makeUrl();
    const s = await state({ url });
    const info = await s.registerNodeKey({
      nodeId: 'k1',
      publicKey: key(),
      name: 'a',
      site: 'site-1',
      by: 'admin@x',
    });
    expect(info).toMatchObject({ site: 'site-1', siteBoundBy: 'admin:admin@x', siteBoundAt: T0 });
    // The caller compares: another site gets the bound one back, and nothing changes.
    expect(await s.bindSite('k1', 'site-2')).toEqual({ site: 'site-1', boundNow: false });
    expect(await s.bindSite('k1', 'site-1')).toEqual({ site: 'site-1', boundNow: false });
    await s.close();
    const again = await state({ url });
    expect(again.getNode('k1')).toMatchObject({ site: 'site-1', siteBoundBy: 'admin:admin@x' });
  });

  it('binds an unnamed key to its first site, once, and keeps that across a reopen', async () => {
    const url = await makeUrl();
    const s = await state({ url });
    const info = await s.registerNodeKey({ nodeId: 'k1', publicKey: key(), name: 'a' });
    expect(info).toMatchObject({ site: null, siteBoundBy: null, siteBoundAt: null });
    clock.t = T0 + 5;
    expect(await s.bindSite('k1', 'site-2')).toEqual({ site: 'site-2', boundNow: true });
    expect(await s.bindSite('k1', 'site-1')).toEqual({ site: 'site-2', boundNow: false });
    expect(s.getNode('k1')).toMatchObject({ site: 'site-2', siteBoundBy: 'first-use', siteBoundAt: T0 + 5 });
    await s.close();
    const again = await state({ url });
    expect(await again.bindSite('k1', 'site-1')).toEqual({ site: 'site-2', boundNow: false });
  });

  it('lets one of two LinkStates on one store bind a key when they race with different sites', async () => {
    const url = await makeUrl();
    const one = await state({ url });
    await one.registerNodeKey({ nodeId: 'k1', publicKey: key(), name: 'a' });
    const two = await state({ url }); // loads the registration, unbound
    const [a, b] = await Promise.all([one.bindSite('k1', 'site-1'), two.bindSite('k1', 'site-2')]);
    expect([a.boundNow, b.boundNow].filter(Boolean)).toHaveLength(1);
    expect(a.site).toBe(b.site);
    // Both now answer the winner from memory, as the store says.
    expect((await one.bindSite('k1', 'x')).site).toBe(a.site);
    expect((await two.bindSite('k1', 'x')).site).toBe(a.site);
  });

  it('refuses to bind a key that is not or no longer registered, and a new registration replaces the site', async () => {
    const s = await state();
    expect(await codeOf(s.bindSite('nobody', 'site-1'))).toBe('NODE_NOT_REGISTERED');
    await s.activateNode({ nodeId: 'cert-node', name: 'c', heartbeatIntervalMs: 10_000 });
    expect(await codeOf(s.bindSite('cert-node', 'site-1'))).toBe('NODE_NOT_REGISTERED');
    const k = key();
    await s.registerNodeKey({ nodeId: 'k1', publicKey: k, name: 'a', site: 'site-1', by: 'root' });
    await s.unregisterNode('k1');
    expect(await codeOf(s.bindSite('k1', 'site-1'))).toBe('NODE_NOT_REGISTERED');
    // Moving a key to another site: register it again.
    await s.registerNodeKey({ nodeId: 'k1', publicKey: k, name: 'a', site: 'site-3', by: 'root' });
    expect(await s.bindSite('k1', 'site-1')).toEqual({ site: 'site-3', boundNow: false });
    await s.unregisterNode('k1');
    await s.registerNodeKey({ nodeId: 'k1', publicKey: k, name: 'a' });
    expect(await s.bindSite('k1', 'site-4')).toEqual({ site: 'site-4', boundNow: true });
    expect(await codeOf(s.registerNodeKey({ nodeId: 'k2', publicKey: key(), name: 'b', site: '' }))).toBe(
      'INVALID_ARGUMENT',
    );
  });

  it('migrates a store from before site binding: its registered keys bind on their next activation', async () => {
    const url = await makeUrl();
    const k = key();
    const { '0001_link_state': first } = linkStateMigrations(backend);
    const old = await openDatabase<LinkSchema>({ url, migrations: { '0001_link_state': first! } });
    try {
      await old.db
        .insertInto('nodes')
        .values({
          node_id: 'k-old',
          name: 'old',
          cert_fingerprint: null,
          public_key: k,
          registered: 1,
          heartbeat_interval_ms: 10_000,
          online_until: 0,
          last_seen_at: null,
          activated_at: T0 - 1_000,
          deactivated_at: null,
          created_at: T0 - 2_000,
        })
        .execute();
    } finally {
      await old.close();
    }
    const s = await state({ url });
    expect(s.isKeyRegistered(k)).toBe('k-old');
    expect(s.getNode('k-old')).toMatchObject({ site: null, registered: true });
    expect(await s.bindSite('k-old', 'site-1')).toEqual({ site: 'site-1', boundNow: true });
    expect(await s.nonces.claim({ nonce: 'n'.repeat(22), nodeId: 'k-old', expiresAt: T0 })).toBe(true);
  });
});
