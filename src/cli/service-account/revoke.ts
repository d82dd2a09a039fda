import { rpc } from '../../transport/errors.js';
import { withControl } from '../control-client.js';
import type { Output } from '../output.js';
import { accountJson } from './format.js';

export interface ServiceAccountRevokeOptions {
  name: string;
  federation?: string;
  config?: string;
}

/** `pollen service-account revoke`: its secret is refused from the next call on. */
export async function serviceAccountRevoke(o: ServiceAccountRevokeOptions, out: Output): Promise<void> {
  await withControl(o.federation, o, async (s) => {
    const res = await rpc(s.control.revokeServiceAccount({ name: o.name }));
    const account = accountJson(res.account!, Date.now());
    out.result(
      { superlink: s.connection.name, account },
      (d) => `revoked service account ${d.account.name} (at ${d.account.revokedAt})`,
    );
  });
}
