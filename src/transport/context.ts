/** Values a handler reads from its Connect context: who the peer is. */
import { createContextKey } from '@connectrpc/connect';
import type { PeerIdentity } from './tls.js';

export const peerContextKey = createContextKey<PeerIdentity | undefined>(undefined, {
  description: 'verified TLS peer identity',
});
