/**
 * One audit entry: who (subject, organisation, how they authenticated, from where), what (action,
 * target), when, the outcome and the federation, hash-chained so each entry seals all before it.
 */
import { createHash } from 'node:crypto';

/** How the caller proved who they are. */
export const AUTH_KINDS = [
  'certificate',
  'user',
  'service_account',
  'api_key',
  'local',
  'enrollment_token',
  'system',
  /** A caller whose credential was refused before it named anyone. */
  'none',
] as const;
export type AuthKind = (typeof AUTH_KINDS)[number];

/** Who made a call, as recorded. */
export interface AuditActor {
  /** Stable: a token's `sub`, a certificate name, `sa:NAME`, `api-key:HASH`, `token:JTI`. */
  subject: string;
  /** Shown to people where it differs from the subject (an e-mail); also matched by `--actor`. */
  name?: string;
  org: string | null;
  auth: AuthKind;
  /** The peer's address (after a trusted proxy), where the call came over a network. */
  address: string | null;
}

/** `ok`, `refused CODE` (an authorisation refused) or `failed CODE` (the change failed). */
export type Outcome = 'ok' | `refused ${string}` | `failed ${string}`;

/** What a service hands the log to record. */
export interface AuditRecord {
  actor: AuditActor;
  action: string;
  target: string;
  at: Date;
  outcome: Outcome;
  federation: string | null;
  detail: Record<string, unknown>;
}

/**
 * One entry as stored and as the APIs return it. Entries written before who/where/outcome were
 * recorded carry null in those fields and hash as they always did.
 */
export interface AuditEntry {
  seq: number;
  at: string;
  actor: string;
  actorName: string | null;
  actorOrg: string | null;
  auth: string | null;
  address: string | null;
  action: string;
  target: string;
  outcome: string | null;
  federation: string | null;
  detail: Record<string, unknown>;
  prevHash: string;
  hash: string;
}

/** The hash before the first entry. */
export const AUDIT_GENESIS = '0'.repeat(64);

/** An entry written before who/where/outcome were recorded: none of them set. */
function isLegacy(e: EntryContent): boolean {
  return (
    e.outcome === null &&
    e.auth === null &&
    e.actorOrg === null &&
    e.actorName === null &&
    e.address === null &&
    e.federation === null
  );
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** The digest of an entry's content: what a reader who may not see the entry is given instead. */
export function entryDigest(e: EntryContent): string {
  return sha256(
    JSON.stringify([
      e.seq,
      e.at,
      e.actor,
      e.action,
      e.target,
      e.detail,
      e.actorName,
      e.actorOrg,
      e.auth,
      e.address,
      e.outcome,
      e.federation,
    ]),
  );
}

/**
 * An entry's hash. A legacy entry: sha256(prevHash, newline, its six fields as a JSON array), as
 * it was written. Every other entry: sha256(prevHash, newline, the digest of all its fields), so
 * none can be changed unseen, and a reader who may not see an entry (another organisation's) can
 * still check the chain through it from its digest.
 */
export function auditHash(prevHash: string, e: EntryContent | RedactedEntry): string {
  if ('redacted' in e) return e.digest === null ? e.hash : sha256(`${prevHash}\n${e.digest}`);
  if (isLegacy(e))
    return sha256(`${prevHash}\n${JSON.stringify([e.seq, e.at, e.actor, e.action, e.target, e.detail])}`);
  return sha256(`${prevHash}\n${entryDigest(e)}`);
}

/** Everything of an entry but its chain fields. */
export type EntryContent = Omit<AuditEntry, 'prevHash' | 'hash'>;

/**
 * An entry the reader may not see: its place in the chain and its digest only (null for a legacy
 * entry, which hashes its fields directly: a reader takes its link on trust).
 */
export interface RedactedEntry {
  seq: number;
  redacted: true;
  digest: string | null;
  prevHash: string;
  hash: string;
}

/** `e` for a reader who may not see it. */
export function redact(e: AuditEntry): RedactedEntry {
  const digest = isLegacy(e) ? null : entryDigest(e);
  return { seq: e.seq, redacted: true, digest, prevHash: e.prevHash, hash: e.hash };
}

/** An entry as a reader gets it: in full, or redacted. */
export type ListedEntry = AuditEntry | RedactedEntry;

/** The entry a record becomes at sequence number `seq` after `prevHash`. */
export function sealEntry(seq: number, prevHash: string, r: AuditRecord): AuditEntry {
  const e = {
    seq,
    at: r.at.toISOString(),
    actor: r.actor.subject,
    actorName: r.actor.name && r.actor.name !== r.actor.subject ? r.actor.name : null,
    actorOrg: r.actor.org,
    auth: r.actor.auth,
    address: r.actor.address,
    action: r.action,
    target: r.target,
    outcome: r.outcome,
    federation: r.federation,
    detail: r.detail,
  };
  return { ...e, prevHash, hash: auditHash(prevHash, e) };
}

/** The outcome of a call that threw: refused (an authorisation) or failed, with its code. */
export function outcomeOf(code: string, refused: boolean): Outcome {
  return refused ? `refused ${code}` : `failed ${code}`;
}

/** The actor as people read it on a record elsewhere (`decided_by`, notifications). */
export function actorLabel(a: AuditActor): string {
  return a.name ?? a.subject;
}

/** A change that was made (outcome ok), as a service records it in the change's transaction. */
export function change(
  actor: AuditActor,
  action: string,
  target: string,
  at: Date,
  detail: Record<string, unknown>,
  federation: string | null = null,
): AuditRecord {
  return { actor, action, target, at, outcome: 'ok', federation, detail };
}

/**
 * The organisation an entry belongs to: the one its change was about (recorded as `detail.org`),
 * else its actor's. An organisation's admin reads its organisation's entries; what someone of
 * theirs did to another organisation belongs to that one.
 */
export function entryOrg(e: AuditEntry): string | null {
  return typeof e.detail.org === 'string' ? e.detail.org : e.actorOrg;
}

/** Who made a call that was refused before its credential named anyone. */
export function unidentified(address: string | null): AuditActor {
  return { subject: address ? `unidentified@${address}` : 'unidentified', org: null, auth: 'none', address };
}
