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
 * The bulk chunk route (transport/bulk-chunks.ts) admits the same callers (`fleetBulkAuth`): in
 * node-key mode its requests carry the session HMAC over method `PUT /pollen.v1.chunks/{id}`
 * (or `GET …`) with body = the id string.
 */
import { type MessageInitShape, toBinary } from '@bufbuild/protobuf';
import { type ContextValues, createContextKey, type Interceptor } from '@connectrpc/connect';
import { PollenError } from '../errors.js';
import type { NodeSessionSchema } from '../gen/pollen/v1/fleet_pb.js';
import { sshPublicKeyLine } from '../pki/openssh.js';
import { projectSlug } from '../pki/profiles.js';
import { NODE_AUTH_HEADERS, type RequestVerifier } from '../supernode/request-auth.js';
import { type BulkRequest, bulkAuthMethod } from '../transport/bulk-chunks.js';
import { peerContextKey } from '../transport/context.js';
import { toConnectError } from '../transport/errors.js';
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
    return { nodeId: nodeIdFromIdentity(peer), name: peer.name, certFingerprint: peer.fingerprint };
  }
  const name = insecureName ?? '';
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(name))
    throw new PollenError('UNAUTHENTICATED', 'In insecure mode a node sends its name (pollen-node-name)');
  return { nodeId: nodeIdFromIdentity({ project: 'insecure', type: 'client', name }), name };
}

/**
 * `authorize` for the Fleet API's bulk chunk route: the caller the interceptor would admit for
 * any call but ActivateNode (certificate checks, then the session HMAC in node-key mode).
 */
export function fleetBulkAuth(o: NodeAuthOptions): (req: BulkRequest) => { nodeId: string } {
  return (req) => {
    const known = certificateCaller(o, req.peer, req.headers['pollen-node-name']);
    if (!o.verifier) return { nodeId: known.nodeId };
    const nodeId = o.verifier.verifySessionRequest({
      method: bulkAuthMethod(req.method, req.id),
      body: req.id,
      headers: req.headers,
    });
    return { nodeId };
  };
}

/**
 * Who is calling: the certificate (or the insecure name), and in node-key mode the signed
 * ActivateNode (which opens a session, put in `values`) or the session MAC over the method and
 * the request bytes. Puts the CallingNode in `values`.
 */
export function authenticateFleetCall(
  o: NodeAuthOptions,
  call: { values: ContextValues; header: Headers; method: string; body: () => Uint8Array },
): void {
  const peer = call.values.get(peerContextKey);
  const known = certificateCaller(o, peer, call.header.get('pollen-node-name'));
  const { name, certFingerprint } = known;
  let { nodeId } = known;
  let publicKey: string | undefined;
  if (o.verifier) {
    const { method } = call;
    const body = call.body();
    const headers = headerMap(call.header);
    if (method === ACTIVATE_METHOD) {
      const verified = o.verifier.verifySignedRequest({
        method,
        body,
        headers,
        isKeyAllowed: (key) => o.state.isKeyRegistered(sshPublicKeyLine(key)),
      });
      nodeId = verified.nodeId;
      publicKey = sshPublicKeyLine(verified.publicKey);
      const session = o.verifier.openSession(nodeId);
      call.values.set(sessionContextKey, {
        sessionId: session.sessionId,
        secret: new Uint8Array(session.secret),
        expiresAt: BigInt(session.expiresAt),
      });
    } else {
      nodeId = o.verifier.verifySessionRequest({ method, body, headers });
    }
  }
  call.values.set(callingNodeKey, { nodeId, name, certFingerprint, publicKey });
}

export function fleetAuthInterceptor(o: NodeAuthOptions): Interceptor {
  return (next) => async (req) => {
    try {
      authenticateFleetCall(o, {
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
