/** Values a handler reads from its Connect context: who the peer is, what credentials it sent. */
import { createContextKey } from '@connectrpc/connect';
import type { PeerIdentity } from './tls.js';

export const peerContextKey = createContextKey<PeerIdentity | undefined>(undefined, {
  description: 'verified TLS peer identity',
});

/**
 * Every `authorization` header of the request as received. Node's HTTP/2 header object keeps only
 * the first of a repeated `authorization`, so a second credential would go unseen: the server
 * reads them all from the raw headers (authorization-headers.ts), and a caller sending two is refused.
 */
export const authorizationContextKey = createContextKey<string[] | undefined>(undefined, {
  description: 'every authorization header of the request',
});

/** The address the request came from (the TCP peer), for the audit trail. */
export const addressContextKey = createContextKey<string | undefined>(undefined, {
  description: 'the remote address of the request',
});
