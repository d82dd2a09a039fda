/**
 * Who calls the Certificate Service's admin API, and may they: one bearer credential per call,
 * an OIDC access token (a person, roles from the identity provider), a service-account secret
 * (the service's own accounts, attributed as `sa:NAME`) or an admin API key (a project admin,
 * attributed to the key as `api-key:HASH`). Two credentials are refused
 * (IDENTITY_AMBIGUOUS), as on the SuperLink's Control API.
 */
import type { AuditActor, AuthKind } from '../../audit/entry.js';
import { PollenError } from '../../errors.js';
import { type BearerSources, bearerCredential, bearerIdentity, isJwt } from '../../identity/caller.js';
import { type Identity, SERVICE_ACCOUNT_PREFIX } from '../../identity/identity.js';
import { type AccessPolicy, authorize, covers, type Right, type Scope } from '../../identity/rights.js';
import type { ApiKeys } from './api-keys.js';
import type { OrgGuard } from './context.js';

/** A caller of the admin API and what a right lets them reach. */
export interface AdminCaller {
  who: Identity;
  /**
   * Recorded on every change and in the audit trail; its label (`decided_by`, notifications) is
   * `api-key:HASH`, `user:NAME` or `sa:NAME`.
   */
  actor: AuditActor;
}

/** How an identity authenticated, as the audit trail records it. */
export function authOf(who: Identity): AuthKind {
  return who.kind;
}

export class AdminAuth {
  constructor(
    private readonly apiKeys: ApiKeys,
    private readonly policy: AccessPolicy,
    private readonly sources: BearerSources = {},
  ) {}

  /** The caller of a request with these `authorization` headers, from `address`. */
  async identify(authorization: readonly string[], address: string | null = null): Promise<AdminCaller> {
    const credential = bearerCredential(authorization);
    if (credential === undefined)
      throw new PollenError('API_KEY_REQUIRED', 'This call needs an admin API key or a login token');
    if (isJwt(credential) || credential.startsWith(SERVICE_ACCOUNT_PREFIX)) {
      const who = await bearerIdentity(credential, this.sources);
      // A service account's name is already `sa:NAME`.
      const name = who.kind === 'user' ? `user:${who.name}` : who.name;
      return { who, actor: { subject: who.subject, name, org: who.org ?? null, auth: authOf(who), address } };
    }
    const key = this.apiKeys.authenticate(`Bearer ${credential}`);
    return {
      who: { kind: 'service_account', subject: key, name: key, org: undefined, roles: ['project_admin'] },
      actor: { subject: key, org: null, auth: 'api_key', address },
    };
  }

  /** Refuse unless the caller holds `right` at some scope; the scope, for filtering. */
  allow(who: Identity, right: Right): Scope {
    return authorize(this.policy, who, right);
  }

  /** The guard a change to several items checks each item's organisation with. */
  guard(who: Identity, right: Right): OrgGuard {
    return (org) => {
      authorize(this.policy, who, right, { org });
    };
  }

  /** Whether an item of organisation `org` is within `scope` for the caller (list filters). */
  sees(who: Identity, scope: Scope, org: string | null | undefined): boolean {
    return covers(scope, who, { org: org ?? undefined });
  }
}
