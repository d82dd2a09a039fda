/**
 * Service accounts: the credentials of pipelines and schedulers, usable wherever a person's token
 * is (the SuperLink's Control API and the Certificate Service's admin API; each service keeps its
 * own accounts in its own store, with this one module). An account has a name, roles, an organisation and an expiry; its definition
 * is the only source of its roles. Its secret (`pollen_sa_` + 32 random bytes, base64url) is shown
 * once, when it is created; the store keeps only its SHA-256.
 *
 * A plain SHA-256, not a slow password hash: the secret is 256 random bits, so there is nothing to
 * guess and a leaked table gives no secret back; a slow hash would only slow down every call.
 *
 * Where one process owns the store (the SuperLink), the accounts are kept in memory (a handful of
 * rows, read on every call that presents a secret) and written through on each change; where
 * several processes share it (a Certificate Service with `--workers`), each lookup reads the store,
 * so a revocation in one process holds in every other at once. Revoked accounts stay, and their
 * names are never reused: what an account did stays attributed to one account.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Kysely, Migration } from 'kysely';
import { PollenError } from '../errors.js';
import { assertValidName } from '../pki/names.js';
import { isUniqueViolation } from '../store/database.js';
import {
  type Identity,
  isRole,
  ROLES,
  type Role,
  SERVICE_ACCOUNT_PREFIX,
  type ServiceAccountAuth,
} from './identity.js';

export interface ServiceAccount {
  name: string;
  /** Pollen roles, widest first. */
  roles: Role[];
  org: string | undefined;
  /** Epoch ms; undefined: it does not expire. */
  expiresAt: number | undefined;
  /** The `Identity.name` of its creator (shown), and their `Identity.subject` (for `own` scopes). */
  createdBy: string;
  createdBySubject: string;
  createdAt: number;
  revokedAt: number | undefined;
  revokedBy: string | undefined;
  lastUsedAt: number | undefined;
}

export interface CreateServiceAccountInput {
  name: string;
  roles: readonly string[];
  org?: string | undefined;
  expiresAt?: number | undefined;
  /** Who creates it. */
  by: Pick<Identity, 'name' | 'subject'>;
}

/** At most one write of an account's last use per this period (not one per call). */
export const LAST_USED_WRITE_MS = 60_000;

/** The prefix and 32 bytes in base64url (43 characters, no padding). */
const SECRET_FORMAT = new RegExp(`^${SERVICE_ACCOUNT_PREFIX}[A-Za-z0-9_-]{43}$`);
const ORG_FORMAT = /^[^\p{Cc}]{1,128}$/u;

/** A new secret: `pollen_sa_` and 256 random bits. */
export function newServiceAccountSecret(): string {
  return `${SERVICE_ACCOUNT_PREFIX}${randomBytes(32).toString('base64url')}`;
}

function digestOf(secret: string): Buffer {
  return createHash('sha256').update(secret).digest();
}

/** Compared against on a miss, so a known and an unknown secret take the same steps. */
const NO_DIGEST = Buffer.alloc(32);

interface Entry {
  account: ServiceAccount;
  digest: Buffer;
  /** When its last use was last written (undefined: never, or the write failed). */
  writtenAt: number | undefined;
}

/** A service's table of accounts (each service's schema includes it). */
export interface ServiceAccountRow {
  name: string;
  /** JSON array of Pollen roles: the account's only source of roles. */
  roles: string;
  org: string | null;
  /** NULL: it does not expire. */
  expires_at: number | null;
  /** SHA-256 (hex) of the secret; the secret itself is never stored. */
  secret_sha256: string;
  /** The `Identity.name` of whoever created it (shown) and their `Identity.subject`. */
  created_by: string;
  created_by_subject: string;
  created_at: number;
  revoked_at: number | null;
  revoked_by: string | null;
  /** Written at most once a minute per account. */
  last_used_at: number | null;
}

type Row = ServiceAccountRow;
interface AccountsSchema {
  service_accounts: ServiceAccountRow;
}
type AccountsDb = Kysely<AccountsSchema>;

/** The migration that makes the table, for each service's list of migrations. */
export const serviceAccountsMigration: Migration = {
  async up(db: Kysely<unknown>) {
    // Revoked accounts stay: their names are never reused, so records keep naming one account.
    await db.schema
      .createTable('service_accounts')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('roles', 'text', (c) => c.notNull())
      .addColumn('org', 'text')
      .addColumn('expires_at', 'bigint')
      .addColumn('secret_sha256', 'text', (c) => c.notNull().unique())
      .addColumn('created_by', 'text', (c) => c.notNull())
      .addColumn('created_by_subject', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('revoked_at', 'bigint')
      .addColumn('revoked_by', 'text')
      .addColumn('last_used_at', 'bigint')
      .execute();
  },
};

/** The digest comparison, as an object so that tests can watch every check go through it. */
export const constantTime = { equal: timingSafeEqual };

export class ServiceAccounts implements ServiceAccountAuth {
  private readonly byName = new Map<string, Entry>();
  /** By the hex SHA-256 of the secret. */
  private readonly byDigest = new Map<string, Entry>();

  private constructor(
    private readonly db: AccountsDb,
    private readonly now: () => number,
    private readonly shared: boolean,
  ) {}

  /**
   * The accounts in a service's store. `shared`: other processes change the same store, so
   * nothing is kept in memory between calls.
   */
  static in<S extends AccountsSchema>(db: Kysely<S>, now: () => number, shared = false): ServiceAccounts {
    // Kysely's types are invariant in the schema: the store has this table among others.
    return new ServiceAccounts(db as unknown as AccountsDb, now, shared);
  }

  /** Read every account into memory (at open, and before each read when the store is shared). */
  async load(): Promise<void> {
    const rows = await this.db.selectFrom('service_accounts').selectAll().execute();
    this.byName.clear();
    this.byDigest.clear();
    for (const row of rows) this.remember(row);
  }

  /** The account of a secret's digest (hex): from memory, or from a shared store. */
  private async byDigestOf(hex: string): Promise<Entry | undefined> {
    if (!this.shared) return this.byDigest.get(hex);
    const row = await this.db
      .selectFrom('service_accounts')
      .selectAll()
      .where('secret_sha256', '=', hex)
      .executeTakeFirst();
    return row && this.remember(row);
  }

  private async byNameOf(name: string): Promise<Entry | undefined> {
    if (this.shared) await this.load();
    return this.byName.get(name);
  }

  /** Create an account; its secret is returned here and never again. */
  async create(input: CreateServiceAccountInput): Promise<{ account: ServiceAccount; secret: string }> {
    const account = this.checked(input);
    const secret = newServiceAccountSecret();
    const row: Row = {
      name: account.name,
      roles: JSON.stringify(account.roles),
      org: account.org ?? null,
      expires_at: account.expiresAt ?? null,
      secret_sha256: digestOf(secret).toString('hex'),
      created_by: account.createdBy,
      created_by_subject: account.createdBySubject,
      created_at: account.createdAt,
      revoked_at: null,
      revoked_by: null,
      last_used_at: null,
    };
    if (await this.byNameOf(account.name)) throw exists(account.name);
    try {
      await this.db.insertInto('service_accounts').values(row).execute();
    } catch (e) {
      // Two creations of one name at once: the store's unique key decides.
      if (isUniqueViolation(e)) throw exists(account.name);
      throw e;
    }
    return { account: copy(this.remember(row).account), secret };
  }

  /** Every account (revoked ones too), by name. */
  async list(): Promise<ServiceAccount[]> {
    if (this.shared) await this.load();
    return [...this.byName.values()]
      .map((e) => copy(e.account))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async get(name: string): Promise<ServiceAccount | undefined> {
    const e = await this.byNameOf(name);
    return e && copy(e.account);
  }

  /** Revoke an account at once (revoking it again changes nothing); SERVICE_ACCOUNT_NOT_FOUND. */
  async revoke(name: string, by: string): Promise<ServiceAccount> {
    const e = await this.byNameOf(name);
    if (!e)
      throw new PollenError('SERVICE_ACCOUNT_NOT_FOUND', `No service account named ${name}`, {
        data: { name },
      });
    if (e.account.revokedAt === undefined) {
      const at = this.now();
      await this.db
        .updateTable('service_accounts')
        .set({ revoked_at: at, revoked_by: by })
        .where('name', '=', name)
        .execute();
      e.account.revokedAt = at;
      e.account.revokedBy = by;
    }
    return copy(e.account);
  }

  /**
   * The identity of a secret's account: SERVICE_ACCOUNT_INVALID for an unknown secret,
   * SERVICE_ACCOUNT_REVOKED, SERVICE_ACCOUNT_EXPIRED. The secret is looked up by its SHA-256 (the
   * lookup's timing can tell at most something of a hash, never of the secret), then compared in
   * constant time, also when nothing matched.
   */
  async authenticate(secret: string): Promise<Identity> {
    const invalid = () =>
      new PollenError('SERVICE_ACCOUNT_INVALID', 'The service-account secret is not valid');
    if (typeof secret !== 'string' || !SECRET_FORMAT.test(secret)) throw invalid();
    const digest = digestOf(secret);
    const e = await this.byDigestOf(digest.toString('hex'));
    const same = constantTime.equal(e?.digest ?? NO_DIGEST, digest);
    if (!e || !same) throw invalid();
    const a = e.account;
    if (a.revokedAt !== undefined)
      throw new PollenError(
        'SERVICE_ACCOUNT_REVOKED',
        `Service account ${a.name} was revoked at ${new Date(a.revokedAt).toISOString()}`,
        { data: { name: a.name } },
      );
    const now = this.now();
    if (a.expiresAt !== undefined && now >= a.expiresAt)
      throw new PollenError(
        'SERVICE_ACCOUNT_EXPIRED',
        `Service account ${a.name} expired at ${new Date(a.expiresAt).toISOString()}`,
        { data: { name: a.name } },
      );
    await this.touch(e, now);
    return {
      kind: 'service_account',
      subject: a.name,
      name: `sa:${a.name}`,
      org: a.org,
      roles: [...a.roles],
      ...(a.expiresAt !== undefined ? { expiresAt: a.expiresAt } : {}),
    };
  }

  /** Note a use; write it when the last write is a minute old. */
  private async touch(e: Entry, at: number): Promise<void> {
    e.account.lastUsedAt = at;
    if (e.writtenAt !== undefined && at - e.writtenAt < LAST_USED_WRITE_MS) return;
    e.writtenAt = at;
    try {
      await this.db
        .updateTable('service_accounts')
        .set({ last_used_at: at })
        .where('name', '=', e.account.name)
        .execute();
    } catch {
      // Bookkeeping never refuses a call: the next use writes it again.
      e.writtenAt = undefined;
    }
  }

  /** The account an input describes, checked (INVALID_ARGUMENT). */
  private checked(input: CreateServiceAccountInput): ServiceAccount {
    assertValidName(input.name);
    const roles = checkRoles(input.roles);
    const org = input.org?.trim() || undefined;
    if (org !== undefined && !ORG_FORMAT.test(org))
      throw new PollenError(
        'INVALID_ARGUMENT',
        'An organisation is 1-128 characters, without control characters',
      );
    const now = this.now();
    if (input.expiresAt !== undefined && !(Number.isSafeInteger(input.expiresAt) && input.expiresAt > now))
      throw new PollenError(
        'INVALID_ARGUMENT',
        `The expiry must be in the future (it was ${describeTime(input.expiresAt)})`,
        { hint: 'Give --expires as a duration (30d, 12h) or a future date (2027-06-30).' },
      );
    return {
      name: input.name,
      roles,
      org,
      expiresAt: input.expiresAt,
      createdBy: input.by.name,
      createdBySubject: input.by.subject,
      createdAt: now,
      revokedAt: undefined,
      revokedBy: undefined,
      lastUsedAt: undefined,
    };
  }

  private remember(row: Row): Entry {
    const optional = (v: number | string | null) => (v === null ? undefined : Number(v));
    const entry: Entry = {
      account: {
        name: row.name,
        roles: JSON.parse(row.roles) as Role[],
        org: row.org ?? undefined,
        expiresAt: optional(row.expires_at),
        createdBy: row.created_by,
        createdBySubject: row.created_by_subject,
        createdAt: Number(row.created_at),
        revokedAt: optional(row.revoked_at),
        revokedBy: row.revoked_by ?? undefined,
        lastUsedAt: optional(row.last_used_at),
      },
      digest: Buffer.from(row.secret_sha256, 'hex'),
      writtenAt: optional(row.last_used_at),
    };
    this.byName.set(row.name, entry);
    this.byDigest.set(row.secret_sha256, entry);
    return entry;
  }
}

/** At least one role, each a Pollen role; widest first, once each. */
function checkRoles(roles: readonly string[]): Role[] {
  const unknown = roles.filter((r) => !isRole(r));
  if (unknown.length > 0 || roles.length === 0)
    throw new PollenError(
      'INVALID_ARGUMENT',
      roles.length === 0
        ? 'A service account needs at least one role'
        : `Not a Pollen role: ${unknown.join(', ')}`,
      { hint: `Give -r/--role once per role: ${ROLES.join(', ')}.` },
    );
  return ROLES.filter((r) => roles.includes(r));
}

/** A copy callers may keep: the entries change as the account is used and revoked. */
function copy(a: ServiceAccount): ServiceAccount {
  return { ...a, roles: [...a.roles] };
}

function exists(name: string): PollenError {
  return new PollenError('SERVICE_ACCOUNT_EXISTS', `A service account named ${name} exists already`, {
    data: { name },
  });
}

function describeTime(ms: number): string {
  return Number.isFinite(ms) && Math.abs(ms) < 8.64e15 ? new Date(ms).toISOString() : String(ms);
}
