/**
 * The site binding of registered node keys, in the store: which client certificate name (the
 * site) may present each key. LinkState keeps the answer in memory; node-auth.ts refuses a key or
 * session under any other site. Bindings are set at registration (`--site`) or by a key's first
 * activation, with a compare-and-set so that of two activations racing under different sites, on
 * one SuperLink or on two sharing the store, exactly one binds.
 */
import type { Kysely } from 'kysely';
import type { WriteBatcher } from '../store/batcher.js';
import type { LinkSchema } from './state-schema.js';

/** How a registered key's site binding stands after `LinkState.bindSite`. */
export interface SiteBinding {
  site: string;
  /** True when this call made the binding (the key's first use). */
  boundNow: boolean;
}

/** A binding as stored: site, when and by whom (`admin:NAME` or `first-use`). */
export interface StoredSite {
  site: string;
  siteBoundAt: number | null;
  siteBoundBy: string | null;
}

export const FIRST_USE = 'first-use';

/** The site columns a registration writes: the named site, or none (bound on first use). */
export function registeredSite(site: string | undefined, by: string | undefined, now: number) {
  return site === undefined
    ? { site: null, site_bound_at: null, site_bound_by: null }
    : { site, site_bound_at: now, site_bound_by: `admin:${by ?? 'unknown'}` };
}

/**
 * Bind `site` to a registered node whose key has no site yet. Returns the binding that stands
 * (this one, or the one another activation made first) and whether this call made it; undefined
 * if the node is not, or no longer, registered.
 */
export async function bindFirstSite(
  db: Kysely<LinkSchema>,
  batcher: WriteBatcher<LinkSchema>,
  nodeId: string,
  site: string,
  now: number,
): Promise<(StoredSite & { boundNow: boolean }) | undefined> {
  const r = await batcher.run((tx) =>
    tx
      .updateTable('nodes')
      .set({ site, site_bound_at: now, site_bound_by: FIRST_USE })
      .where('node_id', '=', nodeId)
      .where('registered', '=', 1)
      .where('site', 'is', null)
      .executeTakeFirst(),
  );
  if (Number(r.numUpdatedRows) === 1)
    return { site, siteBoundAt: now, siteBoundBy: FIRST_USE, boundNow: true };
  const row = await db
    .selectFrom('nodes')
    .select(['registered', 'site', 'site_bound_at', 'site_bound_by'])
    .where('node_id', '=', nodeId)
    .executeTakeFirst();
  if (!row || Number(row.registered) !== 1 || row.site === null) return undefined;
  return { site: row.site, siteBoundAt: row.site_bound_at, siteBoundBy: row.site_bound_by, boundNow: false };
}
