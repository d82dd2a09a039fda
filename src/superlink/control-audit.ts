/**
 * The audit hook of the Control API's port: one Connect interceptor over every service served
 * there (Control, Federations, Audit), keyed by method name. State-changing methods (the list
 * below) are recorded with their outcome once they return or fail; refused authorisations of any
 * method are recorded by control-auth.ts through `recordRefusal`, rate-limited by the trail. A new
 * handler is audited by naming its method here, with no change to its own file.
 */
import { createContextKey, type Interceptor } from '@connectrpc/connect';
import type { AuditActor } from '../audit/entry.js';
import { unidentified } from '../audit/entry.js';
import type { AuditTrail } from '../audit/trail.js';
import type { PollenError } from '../errors.js';
import type { Identity } from '../identity/identity.js';
import { addressContextKey } from '../transport/context.js';
import { errorCodeOf } from '../transport/errors.js';
import type { ControlAuthOptions, Presented } from './control-auth.js';

/** Methods whose calls change state, as `Service/Method` (the service's name without its package). */
export const STATE_CHANGING_METHODS: ReadonlySet<string> = new Set([
  'Control/StartRun',
  'Control/StopRun',
  'Control/RegisterNode',
  'Control/UnregisterNode',
  'Control/CreateServiceAccount',
  'Control/RevokeServiceAccount',
  'Federations/CreateFederation',
  'Federations/InviteMember',
  'Federations/RevokeInvitation',
  'Federations/AcceptInvitation',
  'Federations/RemoveMember',
  'Federations/AddFederationNode',
  'Federations/RemoveFederationNode',
]);

/** One call as the audit trail sees it, filled in as the call goes (who, once identified). */
export interface AuditedCall {
  /** `Service/Method`. */
  method: string;
  address: string | null;
  federation: string | null;
  target: string;
  who?: Identity;
  /** A refusal was recorded (control-auth.ts): nothing more to record. */
  refused?: boolean;
}

export const auditedCallKey = createContextKey<AuditedCall | undefined>(undefined, {
  description: 'the call, as the audit trail records it',
});

/** Request fields that name what a call acts on, in the order they are preferred (never secrets). */
const TARGET_FIELDS = ['runId', 'nodeId', 'name', 'subject', 'id', 'federation'] as const;

function field(message: unknown, name: string): string | undefined {
  const v = (message as Record<string, unknown> | undefined)?.[name];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function targetOf(message: unknown): string {
  for (const f of TARGET_FIELDS) {
    const v = field(message, f);
    if (v !== undefined) return v;
  }
  return '';
}

/** A caller as the trail records them. */
export function actorOf(who: Identity, address: string | null): AuditActor {
  return {
    subject: who.subject,
    ...(who.name !== who.subject && { name: who.name }),
    org: who.org ?? null,
    auth: who.kind,
    address,
  };
}

/** Who a refused call was, as far as it got: the identity, else its certificate, else its address. */
function refusedActor(p: Presented, who: Identity | undefined): AuditActor {
  const address = p.call?.address ?? null;
  if (who) return actorOf(who, address);
  if (p.peer) return { subject: p.peer.name, org: p.peer.org ?? null, auth: 'certificate', address };
  return unidentified(address);
}

/** Record a refused authorisation (called by control-auth.ts where it refuses). */
export function recordRefusal(o: ControlAuthOptions, e: PollenError, p: Presented, who?: Identity): void {
  if (!o.audit) return;
  if (p.call) p.call.refused = true;
  void o.audit.refused({
    actor: refusedActor(p, who),
    action: p.call?.method ?? 'unknown',
    target: p.call?.target ?? '',
    at: o.audit.now(),
    outcome: `refused ${e.code}`,
    federation: p.call?.federation ?? null,
    detail: {},
  });
}

/**
 * Codes a handler answers when a caller reaches past what is theirs: a federation they are not a
 * member of looks absent to them (federation-access.ts), and the trail keeps the attempt as a
 * refusal, on reads too (rate-limited like every refusal).
 */
const REFUSAL_CODES: ReadonlySet<string> = new Set(['FEDERATION_NOT_FOUND']);

/** What a state-changing call returned that names what it made (a run, a node, a federation). */
function madeTarget(response: unknown): string {
  const r = response as Record<string, unknown> | undefined;
  const federation = r?.federation as Record<string, unknown> | undefined;
  return field(r, 'runId') ?? field(r, 'nodeId') ?? field(federation, 'name') ?? '';
}

/** The Control port's audit interceptor (see the file comment). */
export function auditInterceptor(
  audit: Pick<AuditTrail, 'recordCall' | 'refused' | 'now'>,
  changing: ReadonlySet<string> = STATE_CHANGING_METHODS,
): Interceptor {
  return (next) => async (req) => {
    const method = `${req.service.name}/${req.method.name}`;
    const message = req.stream ? undefined : req.message;
    const call: AuditedCall = {
      method,
      address: req.contextValues.get(addressContextKey) ?? null,
      federation:
        field(message, 'federation') ??
        (req.service.name === 'Federations' ? (field(message, 'name') ?? null) : null),
      target: targetOf(message),
    };
    req.contextValues.set(auditedCallKey, call);
    const record = async (outcome: `ok` | `failed ${string}`, target: string) => {
      if (!changing.has(method) || !call.who) return;
      await audit.recordCall({
        actor: actorOf(call.who, call.address),
        action: method,
        target,
        at: audit.now(),
        outcome,
        federation: call.federation,
        detail: {},
      });
    };
    try {
      const res = await next(req);
      await record('ok', madeTarget(res.stream ? undefined : res.message) || call.target);
      return res;
    } catch (e) {
      const code = errorCodeOf(e);
      if (call.refused) throw e;
      if (REFUSAL_CODES.has(code) && call.who) {
        await audit.refused({
          actor: actorOf(call.who, call.address),
          action: method,
          target: call.target,
          at: audit.now(),
          outcome: `refused ${code}`,
          federation: call.federation,
          detail: {},
        });
      } else await record(`failed ${code}`, call.target);
      throw e;
    }
  };
}
