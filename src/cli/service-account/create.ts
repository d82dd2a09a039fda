import { bold, type Output } from '../output.js';
import { type AccountsOptions, withAccounts } from './accounts-at.js';
import { parseExpiry } from './expiry.js';
import { accountLine } from './format.js';

export interface ServiceAccountCreateOptions extends AccountsOptions {
  name: string;
  roles: string[];
  org?: string;
  /** A duration from now (30d), an ISO date, or never. */
  expires: string;
}

const NOT_AGAIN = 'the secret is shown only now: Pollen keeps only its hash and cannot show it again';

/** `pollen service-account create`: a new account; prints its secret, once. */
export async function serviceAccountCreate(o: ServiceAccountCreateOptions, out: Output): Promise<void> {
  const expiresAt = parseExpiry(o.expires, Date.now());
  await withAccounts(o, async (at) => {
    const { account, secret } = await at.create({ name: o.name, roles: o.roles, org: o.org, expiresAt });
    out.warn(`${NOT_AGAIN}; store it in your pipeline's secret store.`);
    out.result({ ...at.where, account, secret, warning: NOT_AGAIN }, (d) => [
      `${bold('created')} ${accountLine(d.account)}`,
      '',
      `  ${d.secret}`,
      '',
      'A pipeline presents it as POLLEN_TOKEN, or in a file named by --token-file (docs/identity.md).',
    ]);
  });
}
