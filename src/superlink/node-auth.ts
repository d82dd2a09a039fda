/**
 * Fleet API authentication, one interceptor for every call.
 *
 * - Certificate mode (default): the TLS layer already verified a client certificate from the
 *   project CA (and the CRL); the node is the certificate's `client` identity.
 * - Node-key mode (`--enable-supernode-auth`): additionally, ActivateNode must be signed with a
 *   registered OpenSSH ECDSA key over method, body hash, timestamp and nonce; the SuperLink then
 *   opens a session and every later call carries an HMAC over the same fields. The ECDSA
 *   signature is checked once per session (P-384 verification runs ~1,000/s per core here), the
 *   per-call HMAC in about a microsecond, so authentication never caps throughput while each
 *   request stays bound and replay-proof.
 * - Insecure mode (development only): no certificate; the node names itself.
 *
 * The bulk chunk route (transport/bulk-server.ts) admits the same callers (`fleetBulkAuth`): in
 * node-key mode its requests carry the session HMAC over method `PUT /pollen.v1.chunks/{id}`
 * (or `GET …`) with body = the id string.
 *
 * A registered key is bound to one site: the client certificate name (in insecure mode the
 * node's name) named at registration or, failing that, the first one that activated with it.
 * ActivateNode under any other site is refused with NODE_IDENTITY_MISMATCH, and so is a session
 * call on a connection of another site than the one that opened the session (a string compare).
 * The nonce of every signed ActivateNode is claimed in the LinkState store (nonce-store.ts), so
 * a captured one stays refused after a restart and at every SuperLink sharing the store.
 */
import { type MessageInitShape, toBinary } from '@bufbuild/protobuf';
import { type ContextValues, createContextKey, type Interceptor } from '@connectrpc/connect';
import type { Logger } from 'pino';
import { PollenError } from '../errors.js';
import type { NodeSessionSchema } from '../gen/pollen/v1/fleet_pb.js';
import { projectSlug } from '../pki/names.js';
import { sshPublicKeyLine } from '../pki/openssh.js';
import { bulkAuthMethod } from '../transport/bulk-protocol.js';
import type { BulkRequest } from '../transport/bulk-server.js';
import { peerContextKey } from '../transport/context.js';
import { toConnectError } from '../transport/errors.js';
import {
  NODE_AUTH_HEADERS,
  type RequestVerifier,
  type SessionRequest,
} from '../transport/node-request-auth.js';
import type { PeerIdentity } from '../transport/tls.js';
import { type CallingNode, callingNodeKey, nodeIdFromIdentity } from './node-identity.js';
import type { LinkState } from './state.js';

export const ACTIVATE_METHOD = '/pollen.v1.Fleet/ActivateNode';

/** The session opened by a signed ActivateNode, for the handler to return to the node. */
export const sessionContextKey = createContextKey<MessageInitShape<typeof NodeSessionSchema> | undefined>(
  undefined,
  {
    description: 'new node session',
  },
);

export interface NodeAuthOptions {
  state: LinkState;
  /** Set in node-key mode. */
  verifier?: RequestVerifier;
  /** Project the client certificates must belong to (certificate mode). */
  project?: string;
  /** No TLS at all (development). */
  insecure: boolean;
  /** Site bindings and refusals by site or stored nonce are logged here (see NODE_AUTH_EVENTS). */
  log?: Pick<Logger, 'info' | 'warn'>;
}

/** The stable `event` field of the log lines that record node-key bindings and refusals. */
export const NODE_AUTH_EVENTS = {
  /** A registered key was bound to the site of its first activation. */
  siteBound: 'node.site.bound',
  /** A key or a session was presented under another site than its own. */
  siteMismatch: 'node.site.mismatch',
  /** A signed request's nonce was already in the store (a restart or another SuperLink saw it). */
  replay: 'node.auth.replay',
  /** Any Fleet call refused by authentication, with the code the node was answered with. */
  refused: 'node.refused',
} as const;

/** Log a refused Fleet call under NODE_AUTH_EVENTS.refused; returns the error to throw on. */
function refused(o: NodeAuthOptions, e: unknown, method: string, peer: PeerIdentity | undefined): unknown {
  if (e instanceof PollenError)
    // An expired session is routine (the node opens a new one at once); the rest is worth a look.
    o.log?.[e.code === 'NODE_SESSION_EXPIRED' ? 'info' : 'warn'](
      { event: NODE_AUTH_EVENTS.refused, code: e.code, method, peer: peer?.name, reason: e.message },
      'SuperNode call refused',
    );
  return e;
}

interface Call {
  values: ContextValues;
  header: Headers;
  method: string;
  body: () => Uint8Array;
}

function headerMap(h: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of Object.values(NODE_AUTH_HEADERS)) {
    const v = h.get(name);
    if (v !== null) out[name] = v;
  }
  return out;
}

/** The node a connection's certificate (or, insecure, its `pollen-node-name`) says it is. */
function certificateCaller(
  o: NodeAuthOptions,
  peer: PeerIdentity | undefined,
  insecureName: string | null | undefined,
): CallingNode {
  if (!o.insecure) {
    if (!peer) throw new PollenError('UNAUTHENTICATED', 'The Fleet API needs a client certificate');
    if (peer.type !== 'client')
      throw new PollenError('PERMISSION_DENIED', `A ${peer.type} certificate cannot join as a SuperNode`);
    if (o.project && peer.project !== projectSlug(o.project))
      throw new PollenError('PERMISSION_DENIED', `The certificate belongs to project ${peer.project}`);
    return {
      nodeId: nodeIdFromIdentity(peer),
      name: peer.name,
      certFingerprint: peer.fingerprint,
      ...(peer.org !== undefined && { certOrg: peer.org }),
    };
  }
  const name = insecureName ?? '';
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(name))
    throw new PollenError('UNAUTHENTICATED', 'In insecure mode a node sends its name (pollen-node-name)');
  return { nodeId: nodeIdFromIdentity({ project: 'insecure', type: 'client', name }), name };
}

/**
 * The site of a caller: its certificate name as issued, which `--site` gives (the identity URI,
 * and so CallingNode.name, percent-encodes `@` and `+`), or the insecure name. Sessions keep the
 * name as the URI spells it, so the per-call check is a plain compare with no decoding.
 */
function siteName(uriName: string): string {
  try {
    return decodeURIComponent(uriName);
  } catch {
    return uriName; // not from our CA's encoder; compared as it is
  }
}

/** Refuse a key or session presented under another site than its own, and log both names. */
function siteMismatch(
  o: NodeAuthOptions,
  e: { nodeId: string; site: string; presented: string; method: string },
): PollenError {
  o.log?.warn({ event: NODE_AUTH_EVENTS.siteMismatch, ...e }, 'node key presented under another site');
  return new PollenError(
    'NODE_IDENTITY_MISMATCH',
    `This SuperNode key is bound to another site than ${e.presented}`,
    { detail: `node ${e.nodeId} is bound to site ${e.site}; ${e.presented} presented it (${e.method})` },
  );
}

/** The node of a session request, refused unless the connection's site opened the session. */
function sessionNode(
  o: NodeAuthOptions,
  verifier: RequestVerifier,
  known: CallingNode,
  req: SessionRequest,
): string {
  const { nodeId, identity } = verifier.verifySession(req);
  if (identity !== undefined && identity !== known.name)
    throw siteMismatch(o, {
      nodeId,
      site: siteName(identity),
      presented: siteName(known.name),
      method: req.method,
    });
  return nodeId;
}

/**
 * `authorize` for the Fleet API's bulk chunk route: the caller the interceptor would admit for
 * any call but ActivateNode (certificate checks, then the session HMAC in node-key mode).
 */
export function fleetBulkAuth(o: NodeAuthOptions): (req: BulkRequest) => { nodeId: string } {
  return (req) => {
    const method = bulkAuthMethod(req.method, req.id);
    try {
      const known = certificateCaller(o, req.peer, req.headers['pollen-node-name']);
      if (!o.verifier) return { nodeId: known.nodeId };
      return { nodeId: sessionNode(o, o.verifier, known, { method, body: req.id, headers: req.headers }) };
    } catch (e) {
      throw refused(o, e, method, req.peer);
    }
  };
}

/**
 * Who is calling, for every call but a node-key ActivateNode: the certificate (or the insecure
 * name), and in node-key mode the session MAC over the method and the request bytes.
 * Synchronous, for the fast gRPC path. Puts the CallingNode in `values`.
 */
export function authenticateSessionCall(o: NodeAuthOptions, call: Call): void {
  try {
    sessionCall(o, call);
  } catch (e) {
    throw refused(o, e, call.method, call.values.get(peerContextKey));
  }
}

function sessionCall(o: NodeAuthOptions, call: Call): void {
  const known = certificateCaller(o, call.values.get(peerContextKey), call.header.get('pollen-node-name'));
  let { nodeId } = known;
  if (o.verifier) {
    if (call.method === ACTIVATE_METHOD)
      throw new PollenError('NODE_AUTH_INVALID', 'ActivateNode must be signed with the node key');
    nodeId = sessionNode(o, o.verifier, known, {
      method: call.method,
      body: call.body(),
      headers: headerMap(call.header),
    });
  }
  call.values.set(callingNodeKey, { ...known, nodeId });
}

/**
 * Who is calling, for every Fleet call: in node-key mode ActivateNode must be signed with a
 * registered key, its nonce new to the store, and its site the key's own (bound now on first
 * use); it opens a session (put in `values`). Other calls go to `authenticateSessionCall`.
 */
export async function authenticateFleetCall(o: NodeAuthOptions, call: Call): Promise<void> {
  const verifier = o.verifier;
  if (!verifier || call.method !== ACTIVATE_METHOD) return authenticateSessionCall(o, call);
  try {
    await signedActivation(o, verifier, call);
  } catch (e) {
    throw refused(o, e, call.method, call.values.get(peerContextKey));
  }
}

async function signedActivation(o: NodeAuthOptions, verifier: RequestVerifier, call: Call): Promise<void> {
  const known = certificateCaller(o, call.values.get(peerContextKey), call.header.get('pollen-node-name'));
  const signed = verifier.verifySignedRequest({
    method: call.method,
    body: call.body(),
    headers: headerMap(call.header),
    isKeyAllowed: (key) => o.state.isKeyRegistered(sshPublicKeyLine(key)),
  });
  const { nodeId } = signed;
  const site = siteName(known.name);
  // The verifier's memory forgets at a restart and knows only this process: the store decides.
  const fresh = await o.state.nonces.claim({
    nonce: signed.nonce,
    nodeId,
    expiresAt: signed.timestamp + verifier.windowMs,
  });
  if (!fresh) {
    o.log?.warn({ event: NODE_AUTH_EVENTS.replay, nodeId, presented: site }, 'signed request replayed');
    throw new PollenError('NODE_AUTH_REPLAY', 'This request nonce was already used', {
      detail: `nonce of node ${nodeId} already in the replay store`,
    });
  }
  // Only after the nonce is claimed, so a replay can never be what binds a key.
  const binding = await o.state.bindSite(nodeId, site);
  if (binding.boundNow)
    o.log?.info(
      { event: NODE_AUTH_EVENTS.siteBound, nodeId, site: binding.site, by: 'first-use' },
      'node key bound to the site of its first activation',
    );
  else if (binding.site !== site)
    throw siteMismatch(o, { nodeId, site: binding.site, presented: site, method: call.method });
  const session = verifier.openSession(nodeId, known.name);
  call.values.set(sessionContextKey, {
    sessionId: session.sessionId,
    secret: new Uint8Array(session.secret),
    expiresAt: BigInt(session.expiresAt),
  });
  call.values.set(callingNodeKey, { ...known, nodeId, publicKey: sshPublicKeyLine(signed.publicKey) });
}

export function fleetAuthInterceptor(o: NodeAuthOptions): Interceptor {
  return (next) => async (req) => {
    try {
      await authenticateFleetCall(o, {
        values: req.contextValues,
        header: req.header,
        method: req.url.slice(req.url.indexOf('/pollen.v1.')),
        body: () => (req.stream ? new Uint8Array() : toBinary(req.method.input, req.message)),
      });
    } catch (e) {
      throw toConnectError(e);
    }
    return next(req);
  };
}
