/**
 * Roles × rights × organisation, in the spirit of FLARE's `authorization.json`: each role grants
 * rights, each with a scope — `own` (what the caller created), `org` (what belongs to the
 * caller's organisation) or `any`. A right no role grants is denied (default deny); a caller
 * with several roles gets the widest scope any of them grants.
 */
import { PollenError } from '../errors.js';
import type { Identity, Role } from './identity.js';

export const RIGHTS = [
  /** Start a run. */
  'run.submit',
  /** Stop a run (`own`: runs the caller submitted). */
  'run.stop',
  /** See runs, their metrics, logs and artefacts. */
  'run.view',
  /** Register and unregister node keys. */
  'node.manage',
  /** Approve, reject and revoke enrollments. */
  'enrollment.decide',
  /** Create, list and revoke service accounts. */
  'service_account.manage',
  /** Read the audit trail. */
  'audit.read',
  /** Create a federation on the SuperLink. */
  'federation.create',
  /** Invite and remove a federation's members, add and remove its nodes (within that federation). */
  'federation.manage',
] as const;
export type Right = (typeof RIGHTS)[number];

/** Narrowest first: a wider scope includes the narrower ones. */
export const SCOPES = ['own', 'org', 'any'] as const;
export type Scope = (typeof SCOPES)[number];

export type AccessPolicy = Record<Role, Partial<Record<Right, Scope>>>;

/** The default policy (docs/identity.md shows it as a file a deployment may replace). */
export const DEFAULT_ACCESS_POLICY: AccessPolicy = {
  project_admin: {
    'run.submit': 'any',
    'run.stop': 'any',
    'run.view': 'any',
    'node.manage': 'any',
    'enrollment.decide': 'any',
    'service_account.manage': 'any',
    'audit.read': 'any',
    'federation.create': 'any',
    'federation.manage': 'any',
  },
  org_admin: {
    'run.stop': 'org',
    'run.view': 'any',
    'node.manage': 'org',
    'enrollment.decide': 'org',
    'service_account.manage': 'org',
    'audit.read': 'org',
    'federation.manage': 'any',
  },
  lead: { 'run.submit': 'any', 'run.stop': 'own', 'run.view': 'any' },
  member: { 'run.view': 'any' },
};

/** What a right is exercised on: its organisation and who created it. */
export interface Target {
  org?: string | undefined;
  /** The creator's `Identity.subject` (for `own`). */
  owner?: string | undefined;
}

/** The widest scope the identity's roles grant for a right, or undefined. */
export function scopeOf(policy: AccessPolicy, who: Identity, right: Right): Scope | undefined {
  let best = -1;
  for (const role of who.roles) {
    const s = policy[role]?.[right];
    if (s) best = Math.max(best, SCOPES.indexOf(s));
  }
  return best < 0 ? undefined : SCOPES[best];
}

/** Whether a scope covers a target: `any` always; `org` the same organisation; `own` the creator. */
export function covers(scope: Scope, who: Identity, target: Target): boolean {
  if (scope === 'any') return true;
  if (scope === 'org') return who.org !== undefined && target.org === who.org;
  return target.owner === who.subject;
}

/**
 * Refuse unless the identity holds the right over the target (or, with no target, at any
 * scope: callers then filter what they show with `covers`).
 */
export function authorize(policy: AccessPolicy, who: Identity, right: Right, target?: Target): Scope {
  const scope = scopeOf(policy, who, right);
  if (!scope)
    throw new PollenError('RIGHT_MISSING', `${who.name} may not ${right}: no role of theirs grants it`, {
      data: { right, roles: who.roles },
    });
  if (target && !covers(scope, who, target))
    throw new PollenError(
      'WRONG_ORGANISATION',
      scope === 'own'
        ? `${who.name} may ${right} only on what they created`
        : `${who.name} may ${right} only within organisation ${who.org ?? '(none)'}`,
      { data: { right, scope, org: target.org ?? null } },
    );
  return scope;
}
