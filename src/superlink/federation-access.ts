/**
 * A caller's rights in a federation. In `default` they are the caller's own roles (as before there
 * were federations); in any other their membership role there, and nothing when they are not a
 * member: the federation then does not exist for them (FEDERATION_NOT_FOUND, the same answer as
 * for a federation that does not exist). A global `project_admin` is the operator: every right in
 * every federation.
 *
 * The answer is an Identity with the roles that apply, so rights.ts `authorize` and `covers`
 * decide as everywhere else (an org-scoped right still looks at the caller's organisation).
 */
import type { Identity } from '../identity/identity.js';
import { type AccessPolicy, type Right, type Scope, scopeOf, type Target } from '../identity/rights.js';
import { DEFAULT_FEDERATION, type Federations, federationNotFound } from './federations.js';
import type { Run } from './run-store.js';

/** What a right over a run is exercised on: its creator and organisation (and its federation's roles). */
export function runTarget(run: Run): Target {
  return { owner: run.createdBySubject ?? undefined, org: run.org ?? undefined };
}

export function isOperator(who: Identity): boolean {
  return who.roles.includes('project_admin');
}

/** `who` with the roles that apply in `federation`; FEDERATION_NOT_FOUND when it is not theirs. */
export function inFederation(federations: Federations, who: Identity, federation: string): Identity {
  if (federation === DEFAULT_FEDERATION) return who;
  if (!federations.get(federation)) throw federationNotFound(federation);
  if (isOperator(who)) return who;
  const m = federations.membership(federation, who);
  if (!m) throw federationNotFound(federation);
  return { ...who, roles: [m.role] };
}

/** `inFederation`, or undefined where the federation is not theirs. */
export function seenIn(federations: Federations, who: Identity, federation: string): Identity | undefined {
  try {
    return inFederation(federations, who, federation);
  } catch {
    return undefined;
  }
}

/** The federations `who` sees: `default`, then those they belong to (an operator: all). */
export function visibleFederations(federations: Federations, who: Identity): string[] {
  const stored = federations.list().map((f) => f.name);
  const mine = isOperator(who) ? stored : stored.filter((f) => federations.membership(f, who));
  return [DEFAULT_FEDERATION, ...mine];
}

/**
 * The scope of `right` for `who` in each federation they see where they hold it; empty: the
 * right is theirs nowhere.
 */
export function scopesByFederation(
  policy: AccessPolicy,
  federations: Federations,
  who: Identity,
  right: Right,
): Map<string, { who: Identity; scope: Scope }> {
  const out = new Map<string, { who: Identity; scope: Scope }>();
  for (const f of visibleFederations(federations, who)) {
    const there = inFederation(federations, who, f);
    const scope = scopeOf(policy, there, right);
    if (scope) out.set(f, { who: there, scope });
  }
  return out;
}
