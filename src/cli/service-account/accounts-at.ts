/**
 * Where `pollen service-account` manages accounts: the SuperLink of a federation (its Control
 * API, the default), or a Certificate Service (`--cert-service URL`, its admin API). Each service
 * keeps its own accounts: a secret works only on the service that made it.
 */
import { rpc } from '../../transport/errors.js';
import { withControl } from '../control-client.js';
import { type ServiceOptions, withClient } from '../enrollment/admin-client.js';
import { type AccountJson, accountJson } from './format.js';

export interface AccountsOptions extends ServiceOptions {
  federation?: string;
}

export interface NewAccount {
  name: string;
  roles: string[];
  org?: string | undefined;
  expiresAt?: number | undefined;
}

/** One service's accounts, as the commands see them. */
export interface AccountsAt {
  /** Names the service in results: `{ superlink }` (its connection's name) or `{ certService }`. */
  where: { superlink: string } | { certService: string };
  create(a: NewAccount): Promise<{ account: AccountJson; secret: string }>;
  list(): Promise<AccountJson[]>;
  revoke(name: string): Promise<AccountJson>;
}

export function withAccounts<T>(o: AccountsOptions, fn: (at: AccountsAt) => Promise<T>): Promise<T> {
  const now = () => Date.now();
  const url = o.certService;
  if (url)
    return withClient(o, (c) =>
      fn({
        where: { certService: url },
        async create(a) {
          const r = await c.createServiceAccount({
            name: a.name,
            roles: a.roles,
            ...(a.org !== undefined && { org: a.org }),
            ...(a.expiresAt !== undefined && { expiresAt: a.expiresAt }),
          });
          return { account: accountJson(r.account, now()), secret: r.secret };
        },
        list: async () => (await c.listServiceAccounts()).map((a) => accountJson(a, now())),
        revoke: async (name) => accountJson(await c.revokeServiceAccount(name), now()),
      }),
    );
  return withControl(o.federation, o, (s) =>
    fn({
      where: { superlink: s.connection.name },
      async create(a) {
        const r = await rpc(
          s.control.createServiceAccount({
            name: a.name,
            roles: a.roles,
            org: a.org ?? '',
            expiresAt: BigInt(a.expiresAt ?? 0),
          }),
        );
        return { account: accountJson(r.account!, now()), secret: r.secret };
      },
      list: async () =>
        (await rpc(s.control.listServiceAccounts({}))).accounts.map((a) => accountJson(a, now())),
      revoke: async (name) =>
        accountJson((await rpc(s.control.revokeServiceAccount({ name }))).account!, now()),
    }),
  );
}

/** How results name the service: `prod` or `the Certificate Service https://…`. */
export function whereText(w: AccountsAt['where']): string {
  return 'superlink' in w ? w.superlink : `the Certificate Service ${w.certService}`;
}
