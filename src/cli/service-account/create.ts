import { rpc } from '../../transport/errors.js';
import { withControl } from '../control-client.js';
import { bold, type Output } from '../output.js';
import { parseExpiry } from './expiry.js';
import { accountJson, accountLine } from './format.js';

export interface ServiceAccountCreateOptions {
  name: string;
  roles: string[];
  org?: string;
  /** A duration from now (30d), an ISO date, or never. */
  expires: string;
  federation?: string;
  config?: string;
}

const NOT_AGAIN = 'the secret is shown only now: Pollen keeps only its hash and cannot show it again';

/** `pollen service-account create`: a new account; prints its secret, once. */
export async function serviceAccountCreate(o: ServiceAccountCreateOptions, out: Output): Promise<void> {
  const now = Date.now();
  const expiresAt = parseExpiry(o.expires, now);
  await withControl(o.federation, o, async (s) => {
    const res = await rpc(
      s.control.createServiceAccount({
        name: o.name,
        roles: o.roles,
        org: o.org ?? '',
        expiresAt: BigInt(expiresAt ?? 0),
      }),
    );
    const account = accountJson(res.account!, now);
    out.warn(`${NOT_AGAIN}; store it in your pipeline's secret store.`);
    out.result({ superlink: s.connection.name, account, secret: res.secret, warning: NOT_AGAIN }, (d) => [
      `${bold('created')} ${accountLine(d.account)}`,
      '',
      `  ${d.secret}`,
      '',
      'A pipeline presents it as POLLEN_TOKEN, or in a file named by --token-file (docs/identity.md).',
    ]);
  });
}
