/**
 * The Certificate Service's own service accounts: pipelines that approve enrollments or issue
 * tokens present a `pollen_sa_…` secret on the admin API, as they do on the SuperLink's Control
 * API. The accounts, their checks and who may manage them are the shared module's
 * (identity/service-accounts.ts, identity/service-account-admin.ts); this part adds the audit
 * trail: each creation and revocation is an entry, attributed to who made it.
 */
import { type AuditActor, change } from '../../audit/entry.js';
import type { Identity } from '../../identity/identity.js';
import type { NewServiceAccount, ServiceAccountAdmin } from '../../identity/service-account-admin.js';
import type { ServiceAccount } from '../../identity/service-accounts.js';
import type { ServiceContext } from './context.js';

/** An account as the admin API returns it (times in epoch ms, null for none). */
export function accountJson(a: ServiceAccount) {
  return {
    name: a.name,
    roles: a.roles,
    org: a.org ?? null,
    expiresAt: a.expiresAt ?? null,
    createdBy: a.createdBy,
    createdAt: a.createdAt,
    revokedAt: a.revokedAt ?? null,
    lastUsedAt: a.lastUsedAt ?? null,
  };
}

export class CertServiceAccounts {
  constructor(
    private readonly c: ServiceContext,
    private readonly admin: ServiceAccountAdmin,
  ) {}

  async create(who: Identity, actor: AuditActor, req: NewServiceAccount) {
    const { account, secret } = await this.admin.create(who, req);
    await this.record(actor, 'service_account.created', account);
    return { account: accountJson(account), secret };
  }

  async list(who: Identity) {
    return { accounts: (await this.admin.list(who)).map(accountJson) };
  }

  async revoke(who: Identity, actor: AuditActor, name: string) {
    const account = await this.admin.revoke(who, name);
    await this.record(actor, 'service_account.revoked', account);
    return { account: accountJson(account) };
  }

  private async record(actor: AuditActor, action: string, a: ServiceAccount): Promise<void> {
    await this.c.batcher.run((tx) =>
      this.c.audit.append(
        tx,
        change(actor, action, a.name, this.c.now(), {
          roles: a.roles,
          ...(a.org !== undefined && { org: a.org }),
          ...(a.expiresAt !== undefined && { expiresAt: new Date(a.expiresAt).toISOString() }),
        }),
      ),
    );
  }
}
