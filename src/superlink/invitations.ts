/**
 * Invitations into a federation: one identity (a verified e-mail or a subject), one role, one
 * use, an expiry. The code (`pollen_inv_` + 32 random bytes, base64url) is shown once; the store
 * keeps only its SHA-256, looked up by digest and compared in constant time, as service-account
 * secrets are (a plain hash suffices: 256 random bits leave nothing to guess).
 *
 * Accepting is a compare-and-set in the store (open → accepted) in the same transaction as the
 * membership it grants: of two accepts racing, on this SuperLink or another sharing the store,
 * exactly one wins and the other is told the invitation was used.
 */
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { PollenError } from '../errors.js';
import type { Identity, Role } from '../identity/identity.js';
import { type Federations, type Member, memberOf, memberSubject } from './federations.js';
import type { LinkDb } from './state-common.js';
import type { LinkSchema } from './state-schema.js';

export const INVITATION_PREFIX = 'pollen_inv_';
const CODE_FORMAT = new RegExp(`^${INVITATION_PREFIX}[A-Za-z0-9_-]{43}$`);
export const DEFAULT_INVITATION_TTL_S = 7 * 24 * 3600;
export const MAX_INVITATION_TTL_S = 90 * 24 * 3600;
const MIN_INVITATION_TTL_S = 60;
const EMAIL_FORMAT = /^[^\s@\p{Cc}]{1,128}@[^\s@\p{Cc}]{1,253}$/u;
const SUBJECT_KINDS = ['user', 'service_account', 'certificate'];

export type InvitationStatus = 'pending' | 'accepted' | 'revoked' | 'expired';

export interface Invitation {
  id: string;
  federation: string;
  email: string | undefined;
  subject: string | undefined;
  role: Role;
  createdBy: string;
  createdAt: number;
  expiresAt: number;
  acceptedBy: string | undefined;
  acceptedAt: number | undefined;
  revokedAt: number | undefined;
  status: InvitationStatus;
}

export interface InviteInput {
  federation: string;
  /** Exactly one of `email` and `subject`. */
  email?: string;
  subject?: string;
  role: Role;
  ttlSeconds?: number;
  by: Identity;
}

type Row = LinkSchema['federation_invitations'];

const digestOf = (code: string): Buffer => createHash('sha256').update(code).digest();
/** Compared against on a miss, so a known and an unknown code take the same steps. */
const NO_DIGEST = Buffer.alloc(32);

/**
 * The invited subject as members are named (`KIND:SUBJECT`); a bare subject is a person's (the
 * `sub` of their access token).
 */
export function invitedSubject(subject: string): string {
  const kind = subject.slice(0, subject.indexOf(':'));
  return SUBJECT_KINDS.includes(kind) ? subject : `user:${subject}`;
}

export class Invitations {
  constructor(
    private readonly db: LinkDb,
    private readonly federations: Federations,
    private readonly now: () => number,
  ) {}

  /** A new invitation and its code (returned here only). */
  async invite(input: InviteInput): Promise<{ invitation: Invitation; code: string }> {
    const email = input.email?.trim() || undefined;
    const subject = input.subject?.trim() || undefined;
    if ((email === undefined) === (subject === undefined))
      throw new PollenError('INVALID_ARGUMENT', 'Invite exactly one identity: an e-mail or a subject', {
        hint: 'Give --email ADDRESS, or --subject SUBJECT (user:SUB, service_account:NAME, certificate:NAME).',
      });
    if (email !== undefined && !EMAIL_FORMAT.test(email))
      throw new PollenError(
        'INVALID_ARGUMENT',
        `Not an e-mail address: ${JSON.stringify(email.slice(0, 80))}`,
      );
    if (subject !== undefined && (subject.length > 300 || /\p{Cc}/u.test(subject)))
      throw new PollenError(
        'INVALID_ARGUMENT',
        'A subject is at most 300 characters, without control characters',
      );
    const ttl = input.ttlSeconds || DEFAULT_INVITATION_TTL_S;
    if (!Number.isSafeInteger(ttl) || ttl < MIN_INVITATION_TTL_S || ttl > MAX_INVITATION_TTL_S)
      throw new PollenError(
        'INVALID_ARGUMENT',
        `An invitation stays open between ${MIN_INVITATION_TTL_S} seconds and ${MAX_INVITATION_TTL_S / 86_400} days`,
        { hint: 'Give a shorter --expires (the default is 7 days).' },
      );
    const code = `${INVITATION_PREFIX}${randomBytes(32).toString('base64url')}`;
    const at = this.now();
    const row: Row = {
      id: `inv-${randomUUID()}`,
      federation: input.federation,
      email: email?.toLowerCase() ?? null,
      subject: subject === undefined ? null : invitedSubject(subject),
      role: input.role,
      code_sha256: digestOf(code).toString('hex'),
      created_by: input.by.name,
      created_at: at,
      expires_at: at + ttl * 1000,
      accepted_by: null,
      accepted_at: null,
      revoked_by: null,
      revoked_at: null,
    };
    await this.db.insertInto('federation_invitations').values(row).execute();
    return { invitation: this.toInvitation(row), code };
  }

  /** An invitation by id, whatever its status. */
  async get(id: string): Promise<Invitation | undefined> {
    if (typeof id !== 'string' || id.length > 64) return undefined;
    const row = await this.db
      .selectFrom('federation_invitations')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    return row && this.toInvitation(row);
  }

  /** A federation's invitations still open, newest first. */
  async pending(federation: string): Promise<Invitation[]> {
    const rows = await this.db
      .selectFrom('federation_invitations')
      .selectAll()
      .where('federation', '=', federation)
      .where('accepted_at', 'is', null)
      .where('revoked_at', 'is', null)
      .where('expires_at', '>', this.now())
      .orderBy('created_at', 'desc')
      .execute();
    return rows.map((r) => this.toInvitation(r));
  }

  /** Revoke an open invitation (INVITATION_NOT_FOUND, INVITATION_USED; revoking twice changes nothing). */
  async revoke(id: string, by: string): Promise<Invitation> {
    const found = await this.get(id);
    if (!found) throw notFound();
    if (found.status === 'accepted') throw used(found);
    if (found.status === 'revoked') return found;
    const at = this.now();
    const r = await this.db
      .updateTable('federation_invitations')
      .set({ revoked_at: at, revoked_by: by })
      .where('id', '=', id)
      .where('accepted_at', 'is', null)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    // Accepted between our read and our write: the accept won.
    if (Number(r.numUpdatedRows) !== 1) return this.revoke(id, by);
    return { ...found, revokedAt: at, status: 'revoked' };
  }

  /**
   * Accept with `code` as `who`: the invitation must be open and name `who` (its verified e-mail
   * or its subject). Returns the membership it grants.
   */
  async accept(code: string, who: Identity): Promise<{ invitation: Invitation; member: Member }> {
    const row = await this.byCode(code);
    if (!row) throw notFound();
    const inv = this.toInvitation(row);
    if (inv.status === 'accepted') throw used(inv);
    if (inv.status === 'revoked')
      throw new PollenError('INVITATION_REVOKED', `Invitation ${inv.id} was revoked`, {
        data: { id: inv.id },
      });
    if (inv.status === 'expired')
      throw new PollenError(
        'INVITATION_EXPIRED',
        `Invitation ${inv.id} expired at ${new Date(inv.expiresAt).toISOString()}`,
        { data: { id: inv.id, expiresAt: inv.expiresAt } },
      );
    refuseOtherIdentity(inv, who);
    const at = this.now();
    const member = memberOf(who, inv.federation, inv.role, `invitation:${inv.id} (${inv.createdBy})`, at);
    const won = await this.db.transaction().execute(async (tx) => {
      const r = await tx
        .updateTable('federation_invitations')
        .set({ accepted_at: at, accepted_by: member.subject })
        .where('id', '=', inv.id)
        .where('accepted_at', 'is', null)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      if (Number(r.numUpdatedRows) !== 1) return false;
      await this.federations.writeMember(tx, member);
      return true;
    });
    if (!won) {
      // Revoked or accepted by someone else since we read it: say which.
      const now = await this.get(inv.id);
      if (now?.status === 'revoked')
        throw new PollenError('INVITATION_REVOKED', `Invitation ${inv.id} was revoked`, {
          data: { id: inv.id },
        });
      throw used(inv);
    }
    this.federations.remember(member);
    return { invitation: { ...inv, acceptedAt: at, acceptedBy: member.subject, status: 'accepted' }, member };
  }

  /** The row of a code, by the digest, compared in constant time also when none matched. */
  private async byCode(code: string): Promise<Row | undefined> {
    if (typeof code !== 'string' || !CODE_FORMAT.test(code.trim())) return undefined;
    const digest = digestOf(code.trim());
    const row = await this.db
      .selectFrom('federation_invitations')
      .selectAll()
      .where('code_sha256', '=', digest.toString('hex'))
      .executeTakeFirst();
    const same = timingSafeEqual(row ? Buffer.from(row.code_sha256, 'hex') : NO_DIGEST, digest);
    return row && same ? row : undefined;
  }

  private toInvitation(r: Row): Invitation {
    const optional = (v: number | null) => (v === null ? undefined : Number(v));
    const expiresAt = Number(r.expires_at);
    const status: InvitationStatus =
      r.accepted_at !== null
        ? 'accepted'
        : r.revoked_at !== null
          ? 'revoked'
          : this.now() >= expiresAt
            ? 'expired'
            : 'pending';
    return {
      id: r.id,
      federation: r.federation,
      email: r.email ?? undefined,
      subject: r.subject ?? undefined,
      role: r.role as Role,
      createdBy: r.created_by,
      createdAt: Number(r.created_at),
      expiresAt,
      acceptedBy: r.accepted_by ?? undefined,
      acceptedAt: optional(r.accepted_at),
      revokedAt: optional(r.revoked_at),
      status,
    };
  }
}

/** INVITATION_WRONG_IDENTITY unless `who` is the identity the invitation names. */
function refuseOtherIdentity(inv: Invitation, who: Identity): void {
  const wrong = (why: string) =>
    new PollenError('INVITATION_WRONG_IDENTITY', `Invitation ${inv.id} is for another identity: ${why}`, {
      data: { id: inv.id },
    });
  if (inv.subject !== undefined) {
    if (memberSubject(who) !== inv.subject) throw wrong(`you are ${memberSubject(who)}`);
    return;
  }
  if (who.email === undefined || who.emailVerified !== true)
    throw wrong('your login carries no verified e-mail address');
  if (who.email.toLowerCase() !== inv.email) throw wrong(`you are logged in as ${who.email}`);
}

function notFound(): PollenError {
  return new PollenError('INVITATION_NOT_FOUND', 'No invitation has this code');
}

function used(inv: Invitation): PollenError {
  return new PollenError('INVITATION_USED', `Invitation ${inv.id} was used already`, {
    data: { id: inv.id },
  });
}
