/**
 * Who is calling the Fleet API. In certificate mode the node is its enrolled identity
 * (`pollen://PROJECT/client/NAME`) and its id is derived from that URI, so it is the same after a
 * restart or a renewal. With node-key authentication the id is derived from the registered key
 * (what `pollen supernode register` prints) and every call is bound to a session (see
 * supernode/request-auth.ts).
 */
import { createHash } from 'node:crypto';
import { createContextKey } from '@connectrpc/connect';
import type { PeerIdentity } from '../transport/tls.js';

/** 16 hex characters, like the ids derived from node keys. */
export function nodeIdFromIdentity(peer: Pick<PeerIdentity, 'project' | 'type' | 'name'>): string {
  return createHash('sha256')
    .update(`pollen://${peer.project}/${peer.type}/${peer.name}`)
    .digest('hex')
    .slice(0, 16);
}

export interface CallingNode {
  nodeId: string;
  name: string;
  certFingerprint?: string;
  /** The organisation (`O=`) its certificate names: what a federation's `node_orgs` match. */
  certOrg?: string;
  publicKey?: string;
}

/** Set by the Fleet authentication interceptor for every admitted call. */
export const callingNodeKey = createContextKey<CallingNode | undefined>(undefined, {
  description: 'the authenticated SuperNode',
});
