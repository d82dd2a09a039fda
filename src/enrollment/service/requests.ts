import { type AuditActor, actorLabel, change } from '../../audit/entry.js';
import { PollenError } from '../../errors.js';
import { checkCsr } from '../../pki/csr.js';
import type { CertType } from '../../pki/profiles.js';
import { matchNamePattern } from '../policy-match.js';
import { iso, type OrgGuard, type ServiceContext } from './context.js';
import {
  alreadyDecided,
  claimDecision,
  type HeldDecision,
  heldDecision,
  isAlreadyDecided,
} from './decision.js';
import type { CertificateIssuer } from './issuer.js';

export interface RequestRow {
  id: string;
  name: string;
  type: string;
  role: string | null;
  org: string | null;
  sourceIp: string | null;
  status: string;
  rule: string | null;
  reason: string | null;
  createdAt: string;
  decidedAt: string | null;
  decidedBy: string | null;
}

export type RequestStatus = 'pending' | 'approved' | 'rejected';

/** Which pending requests an admin means: ids or names, a glob on the name, and a type. */
export interface Selection {
  names: string[];
  pattern?: string;
  /** A certificate type, or `user` for `admin`. */
  type?: string;
}

/**
 * The admin side of pending requests: list them, approve or reject a selection. Each request is
 * decided once (`decision.ts`): of admins deciding one request at once, one wins and the others
 * are told which decision holds.
 */
export class Requests {
  constructor(
    private readonly c: ServiceContext,
    private readonly issuer: CertificateIssuer,
  ) {}

  /** Requests with this status (all when undefined), oldest first. */
  async list(status?: RequestStatus): Promise<RequestRow[]> {
    let q = this.c.store.db.selectFrom('requests').selectAll().orderBy('created_at');
    if (status) q = q.where('status', '=', status);
    return (await q.execute()).map((r) => ({
      id: r.id,
      name: r.name,
      type: r.type,
      role: r.role,
      org: r.org,
      sourceIp: r.source_ip,
      status: r.status,
      rule: r.rule,
      reason: r.reason,
      createdAt: iso(r.created_at)!,
      decidedAt: iso(r.decided_at),
      decidedBy: r.decided_by,
    }));
  }

  /** Pending requests selected by id, name or pattern (and type); a name matching none is an error. */
  private async selectPending(sel: Selection) {
    const type = sel.type === 'user' ? 'admin' : sel.type;
    const pending = await this.c.store.db
      .selectFrom('requests')
      .selectAll()
      .where('status', '=', 'pending')
      .execute();
    const chosen = pending.filter(
      (r) =>
        (!type || r.type === type) &&
        (sel.names.some((n) => n === r.name || n === r.id) ||
          (sel.pattern !== undefined && matchNamePattern(sel.pattern, r.name))),
    );
    for (const n of sel.names)
      if (!chosen.some((r) => r.name === n || r.id === n)) {
        const held = await heldDecision(this.c.store.db, n);
        if (held && (!type || held.type === type)) throw alreadyDecided([held]);
        throw new PollenError(
          'REQUEST_NOT_FOUND',
          `No pending request for '${n}'${type ? ` of type ${type}` : ''}`,
        );
      }
    return chosen;
  }

  /**
   * Approve the selected pending requests, each in its own transaction. A request another admin
   * decided meanwhile is left as decided and listed in `alreadyDecided`; if that befell every
   * selected request, the call fails with REQUEST_ALREADY_DECIDED naming the decision that holds.
   */
  async approve(sel: Selection, actor: AuditActor, guard?: OrgGuard) {
    const chosen = await this.selectPending(sel);
    for (const r of chosen) guard?.(r.org ?? undefined);
    const now = this.c.now();
    const approved: { id: string; name: string; type: string; serial: string }[] = [];
    const lost: HeldDecision[] = [];
    for (const r of chosen) {
      const profile = {
        name: r.name,
        type: r.type as CertType,
        role: r.role ?? undefined,
        org: r.org ?? undefined,
        hosts: r.hosts ? (JSON.parse(r.hosts) as string[]) : undefined,
      };
      const issued = this.issuer.sign(checkCsr(r.csr), profile, now);
      try {
        await this.c.batcher.run(async (tx) => {
          await claimDecision(tx, r.id, {
            status: 'approved',
            decided_at: now.getTime(),
            decided_by: actorLabel(actor),
            serial: issued.serial,
          });
          await this.issuer.refuseIfEnrolledElsewhere(tx, r.name, r.type, r.jti, now);
          await tx
            .insertInto('certificates')
            .values(this.issuer.row(issued, r, actorLabel(actor), now, { jti: r.jti, requestId: r.id }))
            .execute();
          await this.c.audit.append(
            tx,
            change(actor, 'request.approved', r.name, now, {
              requestId: r.id,
              serial: issued.serial,
              ...(r.org !== null && { org: r.org }),
            }),
          );
        });
      } catch (e) {
        if (!isAlreadyDecided(e)) throw e;
        lost.push(e.data as unknown as HeldDecision);
        continue;
      }
      approved.push({ id: r.id, name: r.name, type: r.type, serial: issued.serial });
      this.c.policies.notify(r.policy_sha256, {
        event: 'request.approved',
        requestId: r.id,
        name: r.name,
        type: r.type,
        actor: actorLabel(actor),
      });
    }
    if (approved.length === 0 && lost.length > 0) throw alreadyDecided(lost);
    return lost.length > 0 ? { approved, alreadyDecided: lost } : { approved };
  }

  /** Reject the selected pending requests; one decision per request, as `approve`. */
  async reject(sel: Selection & { reason?: string }, actor: AuditActor, guard?: OrgGuard) {
    const chosen = await this.selectPending(sel);
    for (const r of chosen) guard?.(r.org ?? undefined);
    const now = this.c.now();
    const reason = sel.reason ?? 'rejected by an administrator';
    const lost: HeldDecision[] = [];
    const rejected = await this.c.batcher.run(async (tx) => {
      const won: typeof chosen = [];
      for (const r of chosen) {
        try {
          await claimDecision(tx, r.id, {
            status: 'rejected',
            decided_at: now.getTime(),
            decided_by: actorLabel(actor),
            reason,
          });
        } catch (e) {
          if (!isAlreadyDecided(e)) throw e;
          lost.push(e.data as unknown as HeldDecision);
          continue;
        }
        await this.c.audit.append(
          tx,
          change(actor, 'request.rejected', r.name, now, {
            requestId: r.id,
            reason,
            ...(r.org !== null && { org: r.org }),
          }),
        );
        won.push(r);
      }
      return won;
    });
    if (rejected.length === 0 && lost.length > 0) throw alreadyDecided(lost);
    for (const r of rejected)
      this.c.policies.notify(r.policy_sha256, {
        event: 'request.rejected',
        requestId: r.id,
        name: r.name,
        type: r.type,
        actor: actorLabel(actor),
        reason,
      });
    const list = rejected.map((r) => ({ id: r.id, name: r.name, type: r.type, reason }));
    return lost.length > 0 ? { rejected: list, alreadyDecided: lost } : { rejected: list };
  }
}
