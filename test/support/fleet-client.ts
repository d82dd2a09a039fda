/**
 * A SuperNode's side of the Fleet API, piece by piece, for tests that act as a node or as an
 * attacker holding a site certificate: a channel with a chosen client certificate, ActivateNode
 * requests signed once and sent as many times as a test likes (a captured request), and session
 * calls under a session opened on another connection.
 */

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { create, type MessageInitShape, toBinary } from '@bufbuild/protobuf';
import type { Client, Interceptor } from '@connectrpc/connect';
import type { ErrorCode } from '../../src/errors.js';
import { ActivateNodeRequestSchema, Fleet } from '../../src/gen/pollen/v1/fleet_pb.js';
import { MessageSchema, type Message as WireMessage } from '../../src/gen/pollen/v1/records_pb.js';
import {
  nodeIdFromPublicKey,
  parseSshPrivateKey,
  parseSshPublicKey,
  sshPublicKeyLine,
} from '../../src/pki/openssh.js';
import { ACTIVATE_METHOD } from '../../src/superlink/node-auth.js';
import type { LinkState } from '../../src/superlink/state.js';
import { fleetBulkHeaders, fleetClientAuth, type SessionHolder } from '../../src/supernode/fleet-auth.js';
import { fromConnectError } from '../../src/transport/errors.js';
import { RequestSigner } from '../../src/transport/node-request-auth.js';
import { openChannel, type RpcChannel } from '../../src/transport/rpc-client.js';
import { type CertFiles, tlsOf } from './federation.js';

/** The request every captured activation carries (its bytes are what the signature covers). */
export const ACTIVATE_REQUEST = { heartbeatIntervalMs: 10_000, name: 'node', instanceId: 'test-instance' };

/**
 * Register the node key in `keyFile` (an OpenSSH private key file beside its .pub) as `name`
 * (bound to `site` when given, registered `by` an admin); its node id.
 */
export async function registerKeyFile(
  state: Pick<LinkState, 'registerNodeKey'>,
  keyFile: string,
  o: { name: string; site?: string; by?: string },
): Promise<string> {
  const pub = parseSshPublicKey(readFileSync(`${keyFile}.pub`, 'utf8'));
  const nodeId = nodeIdFromPublicKey(pub);
  await state.registerNodeKey({ nodeId, publicKey: sshPublicKeyLine(pub), ...o });
  return nodeId;
}

/** A node key (an OpenSSH private key file) as a signer. */
export function signerOf(keyFile: string): RequestSigner {
  return new RequestSigner(parseSshPrivateKey(readFileSync(keyFile)));
}

/** Headers of one signed ActivateNode, as someone who captured them would hold them. */
export function signActivation(signer: RequestSigner): Record<string, string> {
  const body = toBinary(ActivateNodeRequestSchema, create(ActivateNodeRequestSchema, ACTIVATE_REQUEST));
  return signer.signedHeaders(ACTIVATE_METHOD, body);
}

/** An interceptor that sets these headers on every request. */
export const setHeaders =
  (headers: Record<string, string>): Interceptor =>
  (next) =>
  (req) => {
    for (const [k, v] of Object.entries(headers)) req.header.set(k, v);
    return next(req);
  };

export interface FleetConnection {
  fleet: Client<typeof Fleet>;
  channel: RpcChannel;
  close(): void;
}

/** A Fleet connection under `cert` that sends `headers` verbatim on every call. */
export function fleetWithHeaders(
  url: string,
  cert: CertFiles,
  headers: Record<string, string>,
): FleetConnection {
  const channel = openChannel({
    baseUrl: url,
    tls: tlsOf(cert),
    interceptors: [setHeaders(headers)],
    bulkHeaders: false,
  });
  return { fleet: channel.client(Fleet), channel, close: () => channel.close() };
}

/** A Fleet connection under `cert` that signs ActivateNode and MACs the rest under `holder`'s session. */
export function fleetWithSession(
  url: string,
  cert: CertFiles,
  signer: RequestSigner,
  holder: SessionHolder,
): FleetConnection {
  const channel = openChannel({
    baseUrl: url,
    tls: tlsOf(cert),
    interceptors: [fleetClientAuth({ signer, holder })],
    bulkHeaders: fleetBulkHeaders({ signer, holder }),
  });
  return { fleet: channel.client(Fleet), channel, close: () => channel.close() };
}

/** Send a captured activation under `cert`; the session it opened, or the error code. */
export async function replayActivation(
  url: string,
  cert: CertFiles,
  headers: Record<string, string>,
): Promise<
  { ok: true; session: { sessionId: string; secret: Uint8Array } } | { ok: false; code: ErrorCode }
> {
  const c = fleetWithHeaders(url, cert, headers);
  try {
    const res = await c.fleet.activateNode(ACTIVATE_REQUEST);
    if (!res.session) throw new Error('ActivateNode opened no session: is node-key mode on?');
    return { ok: true, session: res.session };
  } catch (e) {
    return { ok: false, code: fromConnectError(e).code };
  } finally {
    c.close();
  }
}

/** The PollenError code a promise fails with (undefined if it resolves). */
export async function errorCode(p: Promise<unknown>): Promise<ErrorCode | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return fromConnectError(e).code;
  }
}

/** A node's reply from `srcNodeId` to the instruction `to`, carrying `body`, as the wire has it. */
export function replyTo(
  to: WireMessage,
  srcNodeId: string,
  body: MessageInitShape<typeof MessageSchema>['body'],
): WireMessage {
  return create(MessageSchema, {
    metadata: {
      runId: to.metadata!.runId,
      messageId: randomBytes(16).toString('hex'),
      srcNodeId,
      dstNodeId: '0',
      replyToMessageId: to.metadata!.messageId,
      groupId: to.metadata!.groupId,
      messageType: to.metadata!.messageType,
      createdAt: BigInt(Date.now()),
    },
    body,
  });
}
