/**
 * The Control API's service-account calls: CreateServiceAccount, ListServiceAccounts and
 * RevokeServiceAccount, under the right `service_account.manage`. Project admins manage every
 * account; org admins those of their organisation. Nobody gives an account more than they hold: an
 * account's roles may grant no right wider than its creator's own (an org admin creates no
 * project_admin account), so an account never widens whoever made it.
 */
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import type { Logger } from 'pino';
import { PollenError } from '../errors.js';
import type { Control } from '../gen/pollen/v1/control_pb.js';
import { type Identity, isRole, type Role } from '../identity/identity.js';
import {
  type AccessPolicy,
  authorize,
  covers,
  DEFAULT_ACCESS_POLICY,
  RIGHTS,
  type Right,
  SCOPES,
  type Scope,
  scopeOf,
  type Target,
} from '../identity/rights.js';
import { guard } from '../transport/errors.js';
import type { ServiceAccount, ServiceAccounts } from './service-accounts.js';

export interface ServiceAccountRoutesOptions {
  accounts: ServiceAccounts;
  /** Who makes the call: exactly one identity. */
  identify: (ctx: HandlerContext) => Identity | Promise<Identity>;
  /** Roles × rights (default DEFAULT_ACCESS_POLICY). */
  policy?: AccessPolicy;
  /** Refuse unless `who` holds the right (default: rights.ts `authorize` under `policy`), e.g. to log refusals. */
  check?: (ctx: HandlerContext, who: Identity, right: Right, target?: Target) => Scope;
  /** Creations and revocations are logged here (events `service_account.created` / `.revoked`). */
  log?: Pick<Logger, 'info'>;
}

type Handlers = Pick<
  ServiceImpl<typeof Control>,
  'createServiceAccount' | 'listServiceAccounts' | 'revokeServiceAccount'
>;

export function serviceAccountHandlers(o: ServiceAccountRoutesOptions): Handlers {
  const policy = o.policy ?? DEFAULT_ACCESS_POLICY;
  const check = o.check ?? ((_ctx, who, right, target) => authorize(policy, who, right, target));
  const RIGHT = 'service_account.manage';
  return {
    createServiceAccount: guard(async (req, ctx) => {
      const who = await o.identify(ctx);
      // Without an organisation the account is in its creator's.
      const org = req.org.trim() || who.org;
      check(ctx, who, RIGHT, { org });
      refuseWider(policy, who, req.roles.filter(isRole));
      const { account, secret } = await o.accounts.create({
        name: req.name,
        roles: req.roles,
        org,
        expiresAt: req.expiresAt ? Number(req.expiresAt) : undefined,
        by: who,
      });
      o.log?.info(
        { event: 'service_account.created', name: account.name, by: who.name, roles: account.roles, org },
        'service account created',
      );
      return { account: accountToWire(account), secret };
    }),
    listServiceAccounts: guard(async (_req, ctx) => {
      const who = await o.identify(ctx);
      const scope = check(ctx, who, RIGHT);
      const mine = o.accounts.list().filter((a) => covers(scope, who, targetOf(a)));
      return { accounts: mine.map(accountToWire) };
    }),
    revokeServiceAccount: guard(async (req, ctx) => {
      const who = await o.identify(ctx);
      check(ctx, who, RIGHT);
      const found = o.accounts.get(req.name);
      if (!found)
        throw new PollenError('SERVICE_ACCOUNT_NOT_FOUND', `No service account named ${req.name}`, {
          data: { name: req.name },
        });
      check(ctx, who, RIGHT, targetOf(found));
      const account = await o.accounts.revoke(req.name, who.name);
      o.log?.info(
        { event: 'service_account.revoked', name: account.name, by: who.name },
        'service account revoked',
      );
      return { account: accountToWire(account) };
    }),
  };
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

/** An account as the Control API shows it (times in epoch ms, 0 for none). */
export function accountToWire(a: ServiceAccount) {
  return {
    name: a.name,
    roles: a.roles,
    org: a.org ?? '',
    expiresAt: BigInt(a.expiresAt ?? 0),
    createdBy: a.createdBy,
    createdAt: BigInt(a.createdAt),
    revokedAt: BigInt(a.revokedAt ?? 0),
    lastUsedAt: BigInt(a.lastUsedAt ?? 0),
  };
}
