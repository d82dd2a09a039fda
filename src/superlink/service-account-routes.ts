/**
 * The Control API's service-account calls: CreateServiceAccount, ListServiceAccounts and
 * RevokeServiceAccount, over the rules every service shares (identity/service-account-admin.ts).
 */
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import type { Logger } from 'pino';
import type { Control } from '../gen/pollen/v1/control_pb.js';
import type { Identity } from '../identity/identity.js';
import {
  type AccessPolicy,
  authorize,
  DEFAULT_ACCESS_POLICY,
  type Right,
  type Scope,
  type Target,
} from '../identity/rights.js';
import { ServiceAccountAdmin } from '../identity/service-account-admin.js';
import type { ServiceAccount, ServiceAccounts } from '../identity/service-accounts.js';
import { guard } from '../transport/errors.js';

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
  // One per call: the check sees the call's context (to log a refusal where it happened).
  const admin = (ctx: HandlerContext) =>
    new ServiceAccountAdmin(o.accounts, policy, (who, right, target) => check(ctx, who, right, target));
  return {
    createServiceAccount: guard(async (req, ctx) => {
      const who = await o.identify(ctx);
      const { account, secret } = await admin(ctx).create(who, {
        name: req.name,
        roles: req.roles,
        org: req.org,
        expiresAt: req.expiresAt ? Number(req.expiresAt) : undefined,
      });
      o.log?.info(
        {
          event: 'service_account.created',
          name: account.name,
          by: who.name,
          roles: account.roles,
          org: account.org,
        },
        'service account created',
      );
      return { account: accountToWire(account), secret };
    }),
    listServiceAccounts: guard(async (_req, ctx) => {
      const who = await o.identify(ctx);
      return { accounts: (await admin(ctx).list(who)).map(accountToWire) };
    }),
    revokeServiceAccount: guard(async (req, ctx) => {
      const who = await o.identify(ctx);
      const account = await admin(ctx).revoke(who, req.name);
      o.log?.info(
        { event: 'service_account.revoked', name: account.name, by: who.name },
        'service account revoked',
      );
      return { account: accountToWire(account) };
    }),
  };
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
