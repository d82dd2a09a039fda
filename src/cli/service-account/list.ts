import { bold, type Output } from '../output.js';
import { type AccountsOptions, whereText, withAccounts } from './accounts-at.js';
import { accountLine } from './format.js';

export type ServiceAccountListOptions = AccountsOptions;

/** `pollen service-account list`: the accounts the caller may manage, revoked ones too. */
export async function serviceAccountList(o: ServiceAccountListOptions, out: Output): Promise<void> {
  await withAccounts(o, async (at) => {
    const accounts = await at.list();
    out.result({ ...at.where, accounts }, (d) => [
      `${bold(`${d.accounts.length} service account(s)`)} on ${whereText(at.where)}`,
      ...d.accounts.map((a) => `  ${accountLine(a)}`),
    ]);
  });
}
