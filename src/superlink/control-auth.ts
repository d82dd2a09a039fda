/**
 * Who calls the Control API, and may they: each call carries exactly one identity (an admin
 * certificate over mutual TLS, or a bearer token: an OIDC access token or a service-account
 * secret; identity/caller.ts), and each handler asks for the right it needs (identity/rights.ts).
 * Every refusal is logged (`control.refused`) with its code and the kind of identity.
 */
import type { HandlerContext } from '@connectrpc/connect';
import type { Logger } from 'pino';
import type { AuditTrail } from '../audit/trail.js';
import { PollenError } from '../errors.js';
import {
  type BearerSources,
  bearerCredential,
  bearerIdentity,
  certificateIdentity,
} from '../identity/caller.js';
import { type Identity, LOCAL_ADMIN, type OidcConfig } from '../identity/identity.js';
import { type AccessPolicy, authorize, type Right, type Scope, type Target } from '../identity/rights.js';
import { projectSlug } from '../pki/names.js';
import { authorizationContextKey, peerContextKey } from '../transport/context.js';
import type { PeerIdentity } from '../transport/tls.js';
import { type AuditedCall, auditedCallKey, recordRefusal } from './control-audit.js';

export interface ControlAuthOptions extends BearerSources {
  /** Without TLS (development) a caller without a credential is the local admin. */
  requireAdminCert: boolean;
  /** Admit only admin certificates of this project (as for SuperNodes). */
  project?: string;
  /** Roles × rights (default DEFAULT_ACCESS_POLICY, or the deployment's `--access-policy` file). */
  policy: AccessPolicy;
  /** The identity provider `pollen login` is sent to (GetLoginDetails); none: no login. */
  oidc?: OidcConfig;
  /** Refused callers are logged here (event `control.refused`). */
  log?: Pick<Logger, 'warn'>;
  /** Refused callers are recorded here too (control-audit.ts), rate-limited. */
  audit?: Pick<AuditTrail, 'refused' | 'now'>;
}

/** What a call presented: its verified TLS peer and every `authorization` header. */
export interface Presented {
  peer: PeerIdentity | undefined;
  authorization: readonly string[];
  /** The call as the audit trail sees it (control-audit.ts, or the bulk route's own). */
  call?: AuditedCall;
}

/** The credentials of a Connect call (the in-memory router transport has no raw headers: its Headers fold them). */
export function presentedBy(ctx: HandlerContext): Presented {
  const raw = ctx.values.get(authorizationContextKey);
  const folded = ctx.requestHeader.get('authorization');
  return {
    peer: ctx.values.get(peerContextKey),
    authorization: raw ?? (folded === null ? [] : [folded]),
    call: ctx.values.get(auditedCallKey),
  };
}

function refusedLog(o: ControlAuthOptions, e: unknown, p: Presented, who?: Identity): void {
  if (!(e instanceof PollenError)) return;
  recordRefusal(o, e, p, who);
  const kind = who?.kind ?? (p.peer ? 'certificate' : p.authorization.length > 0 ? 'bearer' : 'none');
  o.log?.warn(
    {
      event: 'control.refused',
      code: e.code,
      identity: kind,
      subject: who?.subject,
      org: who?.org,
      peer: p.peer?.name,
      type: p.peer?.type,
      reason: e.message,
    },
    'Control API call refused',
  );
}

async function identify(p: Presented, o: ControlAuthOptions): Promise<Identity> {
  const { peer } = p;
  if (peer && peer.type !== 'admin')
    throw new PollenError('PERMISSION_DENIED', `A ${peer.type} certificate cannot use the Control API`, {
      hint: 'Use an admin startup kit (`pollen token generate -s you@example.com --user`) in your federation config, or `pollen login`.',
    });
  if (peer && o.project && peer.project !== projectSlug(o.project))
    throw new PollenError('PERMISSION_DENIED', `The certificate belongs to project ${peer.project}`);
  const token = bearerCredential(p.authorization);
  if (peer && token !== undefined)
    throw new PollenError(
      'IDENTITY_AMBIGUOUS',
      'The call carries both an admin certificate and a bearer token',
    );
  if (peer) return certificateIdentity(peer);
  if (token !== undefined) return bearerIdentity(token, o);
  if (!o.requireAdminCert) return LOCAL_ADMIN;
  throw new PollenError('UNAUTHENTICATED', 'The Control API needs an admin certificate or a login token', {
    hint: 'Run `pollen login`, or use an admin startup kit in your federation config.',
  });
}

/** The caller of a call, or the refusal (logged). */
export async function callerOf(p: Presented, o: ControlAuthOptions): Promise<Identity> {
  try {
    const who = await identify(p, o);
    if (p.call) p.call.who = who;
    return who;
  } catch (e) {
    refusedLog(o, e, p);
    throw e;
  }
}

/** `authorize`, with the refusal logged. */
export function check(
  p: Presented,
  o: ControlAuthOptions,
  who: Identity,
  right: Right,
  target?: Target,
): Scope {
  try {
    return authorize(o.policy, who, right, target);
  } catch (e) {
    refusedLog(o, e, p, who);
    throw e;
  }
}
