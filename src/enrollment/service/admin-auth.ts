/**
 * Who calls the Certificate Service's admin API, and may they: one bearer credential per call,
 * an OIDC access token (a person, roles from the identity provider), a service-account secret
 * (the service's own accounts, attributed as `sa:NAME`) or an admin API key (a project admin,
 * attributed to the key as `api-key:HASH`). Two credentials are refused
 * (IDENTITY_AMBIGUOUS), as on the SuperLink's Control API.
 */
import { PollenError } from '../../errors.js';
import { type BearerSources, bearerCredential, bearerIdentity, isJwt } from '../../identity/caller.js';
import { type Identity, SERVICE_ACCOUNT_PREFIX } from '../../identity/identity.js';
import { type AccessPolicy, authorize, covers, type Right, type Scope } from '../../identity/rights.js';
import type { ApiKeys } from './api-keys.js';
import type { OrgGuard } from './context.js';

/** A caller of the admin API and what a right lets them reach. */
export interface AdminCaller {
  who: Identity;
  /** Recorded on every change and in the audit log: `api-key:HASH`, `user:NAME` or `sa:NAME`. */
  actor: string;
}

export class AdminAuth {
  constructor(
    private readonly apiKeys: ApiKeys,
    private readonly policy: AccessPolicy,
    private readonly sources: BearerSources = {},
  ) {}

  /** The caller of a request with these `authorization` headers. */
  async identify(authorization: readonly string[]): Promise<AdminCaller> {
    const credential = bearerCredential(authorization);
    if (credential === undefined)
      throw new PollenError('API_KEY_REQUIRED', 'This call needs an admin API key or a login token');
    if (isJwt(credential) || credential.startsWith(SERVICE_ACCOUNT_PREFIX)) {
      const who = await bearerIdentity(credential, this.sources);
      // A service account's name is already `sa:NAME`.
      return { who, actor: who.kind === 'user' ? `user:${who.name}` : who.name };
    }
    const actor = this.apiKeys.authenticate(`Bearer ${credential}`);
    return {
      who: { kind: 'service_account', subject: actor, name: actor, org: undefined, roles: ['project_admin'] },
      actor,
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
