import type { Output } from '../output.js';
import { type AccountsOptions, withAccounts } from './accounts-at.js';

export interface ServiceAccountRevokeOptions extends AccountsOptions {
  name: string;
}

/** `pollen service-account revoke`: its secret is refused from the next call on. */
export async function serviceAccountRevoke(o: ServiceAccountRevokeOptions, out: Output): Promise<void> {
  await withAccounts(o, async (at) => {
    const account = await at.revoke(o.name);
    out.result(
      { ...at.where, account },
      (d) => `revoked service account ${d.account.name} (at ${d.account.revokedAt})`,
    );
  });
}
