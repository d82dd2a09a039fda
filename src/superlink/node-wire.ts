/** A node as the Control and Federations APIs show it. */
import type { NodeInfo } from './node-registry.js';

/** `federations`: those it serves besides `default` that the caller may see. */
export function nodeToWire(n: NodeInfo, federations: string[]) {
  return {
    nodeId: n.nodeId,
    name: n.name,
    status: n.status,
    registered: n.registered,
    lastSeenAt: BigInt(n.lastSeenAt ?? 0),
    certFingerprint: n.certFingerprint ?? '',
    publicKey: n.publicKey ?? '',
    site: n.site ?? '',
    siteBoundBy: n.siteBoundBy ?? '',
    siteBoundAt: BigInt(n.siteBoundAt ?? 0),
    federations,
  };
}
