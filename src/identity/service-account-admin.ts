/**
 * Managing service accounts, the same on every service that keeps them (the SuperLink's Control
 * API, the Certificate Service's admin API), under the right `service_account.manage`: project
 * admins manage every account, org admins those of their organisation. Nobody gives an account
 * more than they hold: an account's roles may grant no right wider than its creator's own (an org
 * admin creates no project_admin account), so an account never widens whoever made it.
 */
import { PollenError } from '../errors.js';
import { type Identity, isRole, type Role } from './identity.js';
import {
  type AccessPolicy,
  covers,
  RIGHTS,
  type Right,
  SCOPES,
  type Scope,
  scopeOf,
  type Target,
} from './rights.js';
import type { ServiceAccount, ServiceAccounts } from './service-accounts.js';

/** Refuse unless `who` holds the right over `target`; the scope it holds it in. */
export type RightCheck = (who: Identity, right: Right, target?: Target) => Scope;

export interface NewServiceAccount {
  name: string;
  roles: readonly string[];
  /** Empty or absent: the creator's organisation. */
  org?: string | undefined;
  /** Epoch ms; absent: it does not expire. */
  expiresAt?: number | undefined;
}

const RIGHT = 'service_account.manage';

export class ServiceAccountAdmin {
  constructor(
    readonly accounts: ServiceAccounts,
    private readonly policy: AccessPolicy,
    private readonly check: RightCheck,
  ) {}

  async create(who: Identity, req: NewServiceAccount): Promise<{ account: ServiceAccount; secret: string }> {
    // Without an organisation the account is in its creator's.
    const org = req.org?.trim() || who.org;
    this.check(who, RIGHT, { org });
    refuseWider(this.policy, who, req.roles.filter(isRole));
    return this.accounts.create({ name: req.name, roles: req.roles, org, expiresAt: req.expiresAt, by: who });
  }

  /** The accounts `who` may manage, revoked ones too. */
  async list(who: Identity): Promise<ServiceAccount[]> {
    const scope = this.check(who, RIGHT);
    return (await this.accounts.list()).filter((a) => covers(scope, who, targetOf(a)));
  }

  async revoke(who: Identity, name: string): Promise<ServiceAccount> {
    this.check(who, RIGHT);
    const found = await this.accounts.get(name);
    if (!found)
      throw new PollenError('SERVICE_ACCOUNT_NOT_FOUND', `No service account named ${name}`, {
        data: { name },
      });
    this.check(who, RIGHT, targetOf(found));
    return this.accounts.revoke(name, who.name);
  }
}

/** What managing an account is exercised on: its organisation and its creator. */
function targetOf(a: ServiceAccount): Target {
  return { org: a.org, owner: a.createdBySubject };
}

/**
 * SERVICE_ACCOUNT_ROLE_TOO_WIDE (or `o.code`) when `roles` grant a right `who` lacks, or holds
 * only in a narrower scope.
 */
export function refuseWider(
  policy: AccessPolicy,
  who: Identity,
  roles: Role[],
  o: { code: 'SERVICE_ACCOUNT_ROLE_TOO_WIDE' | 'FEDERATION_ROLE_TOO_WIDE'; what: string } = {
    code: 'SERVICE_ACCOUNT_ROLE_TOO_WIDE',
    what: 'give a service account',
  },
): void {
  const rank = (s: Scope | undefined) => (s === undefined ? -1 : SCOPES.indexOf(s));
  const wider: { role: Role; right: Right; scope: Scope; yours: Scope | undefined }[] = [];
  for (const role of roles)
    for (const right of RIGHTS) {
      const scope = policy[role]?.[right];
      const yours = scopeOf(policy, who, right);
      if (scope && rank(scope) > rank(yours)) wider.push({ role, right, scope, yours });
    }
  if (wider.length === 0) return;
  const w = wider[0]!;
  throw new PollenError(
    o.code,
    `${who.name} may not ${o.what} the role ${w.role}: it grants ${w.right} (${w.scope}), ` +
      `${w.yours ? `wider than their own (${w.yours})` : 'which they do not hold'}`,
    {
      data: {
        roles: [...new Set(wider.map((x) => x.role))],
        rights: [...new Set(wider.map((x) => x.right))],
      },
    },
  );
}
