/**
 * The Audit API on the Control port: the SuperLink's audit trail and its checkpoints, for
 * callers holding `audit.read`. A project admin reads every entry; an organisation's admin the
 * entries of their organisation (audit/entry.ts `entryOrg`), the others redacted on
 * request so they can still check the whole chain.
 */
import type { ConnectRouter } from '@connectrpc/connect';
import { type AuditEntry, entryOrg } from '../audit/entry.js';
import type { AuditTrail } from '../audit/trail.js';
import { checkpointToWire, entryToWire } from '../audit/wire.js';
import { Audit } from '../gen/pollen/v1/audit_pb.js';
import { covers } from '../identity/rights.js';
import { guard } from '../transport/errors.js';
import { type ControlAuthOptions, callerOf, check, type Presented, presentedBy } from './control-auth.js';

const DEFAULT_LIMIT = 1000;
const MAX_LIMIT = 10_000;

const limitOf = (n: number) => Math.min(n || DEFAULT_LIMIT, MAX_LIMIT);

/** The caller, if they hold audit.read (their own roles: the trail is the SuperLink's, not a federation's). */
async function reader(p: Presented, o: ControlAuthOptions) {
  const who = await callerOf(p, o);
  return { who, scope: check(p, o, who, 'audit.read') };
}

export function auditRoutes(audit: AuditTrail, o: ControlAuthOptions) {
  return (router: ConnectRouter): void => {
    router.service(Audit, {
      listAudit: guard(async (req, ctx) => {
        const { who, scope } = await reader(presentedBy(ctx), o);
        const entries = await audit.log.list(
          {
            after: Number(req.afterSeq),
            ...(req.sinceMs > 0n && { since: new Date(Number(req.sinceMs)) }),
            ...(req.actor && { actor: req.actor }),
            ...(req.federation && { federation: req.federation }),
            ...(scope !== 'any' && {
              visible: (e: AuditEntry) => covers(scope, who, { org: entryOrg(e) ?? undefined }),
            }),
            hidden: req.redacted ? 'redact' : 'skip',
          },
          limitOf(req.limit),
        );
        return { entries: entries.map(entryToWire) };
      }),
      getCheckpoints: guard(async (req, ctx) => {
        await reader(presentedBy(ctx), o);
        const checkpoints = await audit.log.checkpoints(Number(req.afterSeq), limitOf(req.limit));
        return { checkpoints: checkpoints.map(checkpointToWire) };
      }),
    });
  };
}
