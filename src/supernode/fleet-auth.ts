/**
 * Client side of Fleet authentication: ActivateNode is signed with the node's OpenSSH key, and
 * every later call carries an HMAC under the session the SuperLink returned (see
 * superlink/node-auth.ts for why). In insecure development mode the node only names itself.
 */
import { toBinary } from '@bufbuild/protobuf';
import type { Interceptor } from '@connectrpc/connect';
import { type BulkMethod, bulkAuthMethod } from '../transport/bulk-protocol.js';
import type { RequestSigner } from '../transport/node-request-auth.js';

export interface SessionHolder {
  session?: { sessionId: string; secret: Uint8Array };
}

export function fleetClientAuth(o: {
  signer?: RequestSigner;
  holder: SessionHolder;
  insecureName?: string;
}): Interceptor {
  return (next) => (req) => {
    if (o.insecureName) req.header.set('pollen-node-name', o.insecureName);
    if (o.signer) {
      const method = new URL(req.url).pathname;
      const body = req.stream ? new Uint8Array() : toBinary(req.method.input, req.message);
      const session = o.holder.session;
      const headers =
        method.endsWith('/ActivateNode') || !session
          ? o.signer.signedHeaders(method, body)
          : o.signer.sessionHeaders(
              { sessionId: session.sessionId, secret: Buffer.from(session.secret) },
              method,
              body,
            );
      for (const [k, v] of Object.entries(headers)) req.header.set(k, v);
    }
    return next(req);
  };
}

/**
 * Headers for the Fleet API's bulk chunk route (interceptors do not see those requests): the
 * session HMAC over method `PUT /pollen.v1.chunks/{id}` (or `GET …`) with body = the id.
 */
export function fleetBulkHeaders(o: {
  signer?: RequestSigner;
  holder: SessionHolder;
  insecureName?: string;
}): (method: BulkMethod, id: string) => Record<string, string> {
  return (method, id) => {
    const headers: Record<string, string> = {};
    if (o.insecureName) headers['pollen-node-name'] = o.insecureName;
    const session = o.holder.session;
    if (o.signer && session)
      Object.assign(
        headers,
        o.signer.sessionHeaders(
          { sessionId: session.sessionId, secret: Buffer.from(session.secret) },
          bulkAuthMethod(method, id),
          id,
        ),
      );
    return headers;
  };
}
