import { rpc } from '../../transport/errors.js';
import { withControl } from '../control-client.js';
import { bold, type Output } from '../output.js';
import { accountJson, accountLine } from './format.js';

export interface ServiceAccountListOptions {
  federation?: string;
  config?: string;
}

/** `pollen service-account list`: the accounts the caller may manage, revoked ones too. */
export async function serviceAccountList(o: ServiceAccountListOptions, out: Output): Promise<void> {
  await withControl(o.federation, o, async (s) => {
    const res = await rpc(s.control.listServiceAccounts({}));
    const now = Date.now();
    const accounts = res.accounts.map((a) => accountJson(a, now));
    out.result({ superlink: s.connection.name, accounts }, (d) => [
      `${bold(`${d.accounts.length} service account(s)`)} on ${d.superlink}`,
      ...d.accounts.map((a) => `  ${accountLine(a)}`),
    ]);
  });
}
