/**
 * NetworkPolicies from the port map (port-map.ts), as `pollen deploy firewall` makes nftables
 * rules from it: each namespace denies everything, then each component's pods accept the ports
 * the map lists for their host role, from the parties it names, and open outbound only the ports
 * the map says their role connects to (plus DNS).
 *
 * What differs from a host firewall: the ops listener (metrics and health, loopback on a host)
 * listens on the pod's address, because the kubelet's probes come from the node; kubelets always
 * reach their own pods whatever the policies, so only the monitoring namespace is let in. The VPN
 * rows are for hosts: in a cluster, the pod network carries the flows.
 */
import { type HostRole, type Peer, PORT_MAP, type PortRow } from './port-map.js';

/** A Kubernetes object as the generators build it (validated against the schemas by the tests). */
export type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
} & Record<string, unknown>;

/** The label every Pollen object carries, and the one that says which component a pod runs. */
export const NAME_LABEL = 'app.kubernetes.io/name';
export const COMPONENT_LABEL = 'app.kubernetes.io/component';

/** The component label of the pods of each host role. */
export const POD_COMPONENT: Record<HostRole, string> = {
  superlink: 'superlink',
  'cert-service': 'cert-service',
  site: 'supernode',
};

export const podSelector = (role: HostRole) => ({
  matchLabels: { [NAME_LABEL]: 'pollen', [COMPONENT_LABEL]: POD_COMPONENT[role] },
});

/** Where the parties of the port map live in the cluster. */
export interface PolicyPlaces {
  /** The namespace of the SuperLink and the Certificate Service. */
  cloudNamespace: string;
  /** The organisations' namespaces. */
  siteNamespaces: string[];
  /** Sites outside the cluster that reach the Fleet API (CIDRs, e.g. the VPN's network). */
  externalSites: string[];
  /** Prometheus's namespace: the only one let in to the ops listeners. */
  monitoringNamespace: string;
  /** The Certificate Service's PostgreSQL port (outbound; not a Pollen listener, so not in the map). */
  databasePort: number;
}

/** The rows a cluster serves: Pollen's own listeners, none that stays on the loopback. */
export function clusterIngressRows(role: HostRole): PortRow[] {
  return PORT_MAP.filter(
    (r) =>
      r.host === role &&
      r.protocol === 'tcp' &&
      r.component !== 'WireGuard' &&
      r.component !== 'OpenVPN' &&
      (r.exposed !== 'loopback' || r.from.includes('monitoring')),
  );
}

/** The rows a role's pods connect to (outbound). */
export function clusterEgressRows(role: HostRole): PortRow[] {
  return PORT_MAP.filter(
    (r) =>
      r.from.includes(role) &&
      r.protocol === 'tcp' &&
      r.exposed !== 'loopback' &&
      r.component !== 'WireGuard' &&
      r.component !== 'OpenVPN',
  );
}

const byName = (namespaces: string[]) => ({
  matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: namespaces }],
});

/** Who may open a connection: a peer of the port map in cluster terms (none for `public`). */
function sources(row: PortRow, p: PolicyPlaces): Record<string, unknown>[] | undefined {
  if (row.exposed === 'public') return undefined;
  const from: Record<string, unknown>[] = [];
  const add = (peer: Peer) => {
    if (peer === 'site') {
      if (p.siteNamespaces.length > 0)
        from.push({ namespaceSelector: byName(p.siteNamespaces), podSelector: podSelector('site') });
      for (const cidr of p.externalSites) from.push({ ipBlock: { cidr } });
    } else if (peer === 'superlink' || peer === 'cert-service')
      from.push({ namespaceSelector: byName([p.cloudNamespace]), podSelector: podSelector(peer) });
    else if (peer === 'monitoring') from.push({ namespaceSelector: byName([p.monitoringNamespace]) });
  };
  for (const peer of row.from) add(peer);
  return from;
}

const tcp = (port: number) => ({ protocol: 'TCP', port });

function policy(name: string, spec: Record<string, unknown>): K8sObject {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name, labels: { [NAME_LABEL]: 'pollen' } },
    spec,
  };
}

/** Nothing in or out of the namespace's pods but what the other policies allow. */
export function defaultDeny(): K8sObject {
  return policy('pollen-default-deny', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] });
}

/** Every pod resolves names (the cluster DNS, in whatever namespace it runs). */
export function allowDns(): K8sObject {
  return policy('pollen-allow-dns', {
    podSelector: {},
    policyTypes: ['Egress'],
    egress: [{ ports: [{ protocol: 'UDP', port: 53 }, tcp(53)] }],
  });
}

/**
 * A component's policy: ingress per port map row, egress to the ports its role connects to (on
 * any address: the peer may be outside the cluster, behind a load balancer).
 */
export function componentPolicy(role: HostRole, p: PolicyPlaces): K8sObject {
  const ingress = clusterIngressRows(role).map((r) => {
    const from = sources(r, p);
    return { ports: [tcp(r.port)], ...(from && { from }) };
  });
  const egressPorts = [...new Set(clusterEgressRows(role).map((r) => r.port))];
  if (role === 'cert-service') egressPorts.push(p.databasePort);
  const egress = egressPorts.map((port) => ({ ports: [tcp(port)] }));
  return policy(`pollen-${POD_COMPONENT[role]}`, {
    podSelector: podSelector(role),
    policyTypes: ['Ingress', 'Egress'],
    ingress,
    egress,
  });
}
