/**
 * Kustomize manifests for a federation on Kubernetes (`pollen deploy kubernetes`): a base for the
 * cloud side (the SuperLink, the Certificate Service) and one for sites, and an overlay per
 * namespace. The SuperLink is one replica replaced by `Recreate` (its store lease refuses a
 * second one anyway); the Certificate Service runs replicas over PostgreSQL; each organisation has
 * its own namespace and SuperNode StatefulSet, whose replica N enrolls with token N from the
 * organisation's own Secret. Pods run as the images' unprivileged user on a read-only root file
 * system, mount secrets read-only, and are probed on the ops listener's /healthz and /readyz.
 */
import { stringify } from 'yaml';
import { type DeployFile, file } from './files.js';
import {
  allowDns,
  COMPONENT_LABEL,
  componentPolicy,
  defaultDeny,
  type K8sObject,
  NAME_LABEL,
  type PolicyPlaces,
  podSelector,
} from './kubernetes-policies.js';
import {
  SCRIPT_ENV,
  startScript,
  superlinkEnrollScript,
  supernodeEnrollScript,
} from './kubernetes-scripts.js';
import { CERT_SERVICE_PORT, FLEET_PORT, metricsPort, portOf } from './port-map.js';

export interface KubernetesOptions {
  /** Organisations with CPU SuperNodes: one namespace, StatefulSet and token Secret each. */
  orgs: string[];
  /** Organisations whose SuperNodes get NVIDIA GPUs (the GPU image, `nvidia.com/gpu` limits). */
  gpuOrgs: string[];
  /** SuperNodes per organisation at first (`kubectl scale` changes it). */
  replicas: number;
  /** GPUs per SuperNode pod of a GPU organisation. */
  gpusPerNode: number;
  /** The SuperLink's and the Certificate Service's namespace. */
  cloudNamespace: string;
  /** Images: REGISTRY/pollen-superlink:TAG, … (built from deploy/docker/). */
  registry: string;
  tag: string;
  /** The name sites dial for the Fleet API: the SuperLink's certificate names it. */
  superlinkHost: string;
  /** The Certificate Service as sites and the SuperLink reach it (https://HOST:PORT). */
  certServiceUrl: string;
  /** Certificate Service replicas (they share the PostgreSQL store). */
  certServiceReplicas: number;
  /** postgres://USER@HOST:PORT/DB without a password (the password comes from a Secret). */
  databaseUrl: string;
  /** Prometheus's namespace, let in to the ops listeners. */
  monitoringNamespace: string;
  /** Sites outside the cluster that reach the Fleet API (CIDRs). */
  externalSites: string[];
  /** Persistent volume size of the SuperLink and of each SuperNode. */
  storage: string;
}

export const KUBERNETES_DEFAULTS = {
  gpuOrgs: [] as string[],
  replicas: 2,
  gpusPerNode: 1,
  cloudNamespace: 'pollen',
  registry: 'pollen',
  tag: '0.1.0',
  certServiceReplicas: 2,
  monitoringNamespace: 'monitoring',
  externalSites: [] as string[],
  storage: '10Gi',
} satisfies Partial<KubernetesOptions>;

/** The namespace of an organisation's SuperNodes. */
export const siteNamespace = (org: string) => `pollen-${org}`;
/** The Secret of an organisation's enrollment tokens (in its own namespace). */
export const tokenSecret = (org: string) => `pollen-tokens-${org}`;

/** The Secrets and the ConfigMap an operator makes before applying (docs/deployment.md). */
export const CLOUD_SECRETS = {
  ca: 'pollen-ca',
  apiKey: 'pollen-cert-service-api-key',
  database: 'pollen-cert-service-database',
  superlinkToken: 'pollen-superlink-token',
  policy: 'pollen-enrollment-policy',
} as const;

/** Where things are mounted in the pods. */
export const MOUNTS = {
  state: '/var/lib/pollen',
  tokens: '/var/run/pollen/tokens',
  ca: '/etc/pollen/ca',
  apiKey: '/var/run/pollen/api-key',
  policy: '/etc/pollen/policy',
  tmp: '/tmp',
} as const;

const UID = 10001; // the images' user `pollen` (deploy/docker)

const labels = (component: string, extra: Record<string, string> = {}) => ({
  [NAME_LABEL]: 'pollen',
  [COMPONENT_LABEL]: component,
  ...extra,
});

const image = (o: KubernetesOptions, name: string) => `${o.registry}/${name}:${o.tag}`;

const env = (vars: Record<string, string>) => Object.entries(vars).map(([name, value]) => ({ name, value }));

/** A container as every Pollen pod runs it: no privilege, nothing writable but its volumes. */
function container(
  name: string,
  img: string,
  rest: Record<string, unknown> & { resources: Record<string, unknown> },
): Record<string, unknown> {
  return {
    name,
    image: img,
    ...rest,
    securityContext: {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
    },
  };
}

const shell = (script: string) => ({ command: ['/bin/sh', '-c'], args: [script] });

/** Liveness on /healthz, readiness on /readyz of the ops listener (its own port, plain HTTP). */
function probes(port: number) {
  const get = (path: string) => ({ httpGet: { path, port: 'ops' }, periodSeconds: 10, timeoutSeconds: 5 });
  return {
    ports: [{ name: 'ops', containerPort: port }],
    livenessProbe: { ...get('/healthz'), failureThreshold: 3 },
    readinessProbe: { ...get('/readyz'), failureThreshold: 3 },
    // Enrollment and start-up (store, TLS material) may take a while on a first start.
    startupProbe: { ...get('/readyz'), failureThreshold: 30 },
  };
}

/** The pod-level settings of every Pollen pod. */
function podSpec(spec: Record<string, unknown>): Record<string, unknown> {
  return {
    automountServiceAccountToken: false,
    // The pod's pause process is PID 1 and reaps what app processes leave behind (tini's job in
    // the images, whose entry point the pods replace).
    shareProcessNamespace: true,
    securityContext: {
      runAsNonRoot: true,
      runAsUser: UID,
      runAsGroup: UID,
      // Volumes (and the secrets' files) belong to the images' group, readable by the user.
      fsGroup: UID,
      seccompProfile: { type: 'RuntimeDefault' },
    },
    ...spec,
  };
}

const secretVolume = (name: string, secretName: string) => ({
  name,
  secret: { secretName, defaultMode: 0o440 },
});
const readOnly = (name: string, mountPath: string) => ({ name, mountPath, readOnly: true });
const tmpVolume = { name: 'tmp', emptyDir: {} };
const tmpMount = { name: 'tmp', mountPath: MOUNTS.tmp };

const opsAddress = (component: 'SuperLink' | 'SuperNode' | 'Certificate Service') =>
  `0.0.0.0:${metricsPort(component)}`;

const CONTROL_PORT = portOf('SuperLink', 'Control API + dashboard');

// ---------------------------------------------------------------------------------------------
// The cloud side

function superlinkObjects(o: KubernetesOptions): K8sObject[] {
  const kitEnv = env({
    [SCRIPT_ENV.kit]: `${MOUNTS.state}/kit`,
    [SCRIPT_ENV.tokens]: MOUNTS.tokens,
    [SCRIPT_ENV.superlinkHost]: o.superlinkHost,
    [SCRIPT_ENV.listenEndpoint]: `grpcs://0.0.0.0:${FLEET_PORT}:${CONTROL_PORT}`,
    POLLEN_CERT_SERVICE_URL: o.certServiceUrl,
  });
  const mounts = [{ name: 'state', mountPath: MOUNTS.state }, readOnly('token', MOUNTS.tokens), tmpMount];
  const img = image(o, 'pollen-superlink');
  const resources = { requests: { cpu: '500m', memory: '512Mi' }, limits: { cpu: '2', memory: '4Gi' } };
  return [
    {
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: { name: 'pollen-superlink-state', labels: labels('superlink') },
      spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: o.storage } } },
    },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'pollen-superlink', labels: labels('superlink') },
      spec: {
        // One SuperLink per store: never two, not even during an update (its store lease makes
        // a second one on the same database refuse to start with STORE_LEASE_HELD).
        replicas: 1,
        strategy: { type: 'Recreate' },
        selector: podSelector('superlink'),
        template: {
          metadata: { labels: labels('superlink') },
          spec: podSpec({
            terminationGracePeriodSeconds: 30,
            initContainers: [
              container('enroll', img, {
                ...shell(superlinkEnrollScript()),
                env: kitEnv,
                volumeMounts: mounts,
                resources,
              }),
            ],
            containers: [
              container('superlink', img, {
                ...shell(startScript()),
                workingDir: MOUNTS.state,
                env: [
                  ...kitEnv,
                  ...env({ POLLEN_METRICS_ADDRESS: opsAddress('SuperLink'), POLLEN_LOG_FORMAT: 'json' }),
                ],
                ...withPorts(probes(metricsPort('SuperLink')), [
                  { name: 'fleet', containerPort: FLEET_PORT },
                  { name: 'control', containerPort: CONTROL_PORT },
                ]),
                volumeMounts: mounts,
                resources,
              }),
            ],
            volumes: [
              { name: 'state', persistentVolumeClaim: { claimName: 'pollen-superlink-state' } },
              secretVolume('token', CLOUD_SECRETS.superlinkToken),
              tmpVolume,
            ],
          }),
        },
      },
    },
    service('pollen-superlink', 'superlink', [
      { name: 'fleet', port: FLEET_PORT },
      { name: 'control', port: CONTROL_PORT },
    ]),
  ];
}

function withPorts(p: ReturnType<typeof probes>, more: { name: string; containerPort: number }[]) {
  return { ...p, ports: [...more, ...p.ports] };
}

/** A LoadBalancer Service: TLS passes through it to the pods (mutual TLS ends at Pollen). */
function service(name: string, component: string, ports: { name: string; port: number }[]): K8sObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, labels: labels(component) },
    spec: {
      type: 'LoadBalancer',
      // Keeps the client's address (the enrollment policy's source_ips, the audit trail).
      externalTrafficPolicy: 'Local',
      selector: labels(component),
      ports: ports.map((p) => ({ ...p, targetPort: p.name, protocol: 'TCP' })),
    },
  };
}

function certServiceObjects(o: KubernetesOptions): K8sObject[] {
  const host = new URL(o.certServiceUrl).hostname;
  const args = [
    '--ca',
    MOUNTS.ca,
    '--workspace',
    `${MOUNTS.state}/cert-service`,
    '--api-key-file',
    `${MOUNTS.apiKey}/api_key.txt`,
    '--policy',
    `${MOUNTS.policy}/policy.yaml`,
    // Kubernetes puts the variable's value in (from the Secret): no password in the manifest.
    '--database',
    '$(POLLEN_DATABASE_URL)',
    '--port',
    String(CERT_SERVICE_PORT),
    '--hostname',
    host,
  ];
  const fromSecret = (name: string, key: string) => ({
    name,
    valueFrom: { secretKeyRef: { name: CLOUD_SECRETS.database, key } },
  });
  return [
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'pollen-cert-service', labels: labels('cert-service') },
      spec: {
        replicas: o.certServiceReplicas,
        selector: podSelector('cert-service'),
        template: {
          metadata: { labels: labels('cert-service') },
          spec: podSpec({
            containers: [
              container('cert-service', image(o, 'pollen-cert-service'), {
                command: ['pollen', 'cert-service'],
                args,
                env: [
                  // The URL names user, host and database; node-postgres reads the password
                  // from PGPASSWORD.
                  fromSecret('POLLEN_DATABASE_URL', 'url'),
                  fromSecret('PGPASSWORD', 'password'),
                  ...env({
                    POLLEN_METRICS_ADDRESS: opsAddress('Certificate Service'),
                    POLLEN_LOG_FORMAT: 'json',
                  }),
                ],
                ...withPorts(probes(metricsPort('Certificate Service')), [
                  { name: 'enroll', containerPort: CERT_SERVICE_PORT },
                ]),
                volumeMounts: [
                  readOnly('ca', MOUNTS.ca),
                  readOnly('api-key', MOUNTS.apiKey),
                  readOnly('policy', MOUNTS.policy),
                  // Its own TLS certificate, made at start from the CA: nothing to keep.
                  { name: 'workspace', mountPath: MOUNTS.state },
                  tmpMount,
                ],
                resources: {
                  requests: { cpu: '250m', memory: '256Mi' },
                  limits: { cpu: '1', memory: '1Gi' },
                },
              }),
            ],
            volumes: [
              secretVolume('ca', CLOUD_SECRETS.ca),
              secretVolume('api-key', CLOUD_SECRETS.apiKey),
              { name: 'policy', configMap: { name: CLOUD_SECRETS.policy } },
              { name: 'workspace', emptyDir: {} },
              tmpVolume,
            ],
          }),
        },
      },
    },
    service('pollen-cert-service', 'cert-service', [{ name: 'enroll', port: CERT_SERVICE_PORT }]),
  ];
}

// ---------------------------------------------------------------------------------------------
// Sites

/** An organisation's SuperNodes: pod ORG-N enrolls as site ORG-N with token N of its Secret. */
export function supernodeStatefulSet(o: KubernetesOptions, org: string, gpu: boolean): K8sObject {
  const kitEnv = env({
    [SCRIPT_ENV.kit]: `${MOUNTS.state}/kit`,
    [SCRIPT_ENV.tokens]: MOUNTS.tokens,
    [SCRIPT_ENV.org]: org,
    [SCRIPT_ENV.tokenSecret]: tokenSecret(org),
    [SCRIPT_ENV.fleetEndpoint]: `grpcs://${o.superlinkHost}:${FLEET_PORT}`,
    POLLEN_CERT_SERVICE_URL: o.certServiceUrl,
  });
  const mounts = [{ name: 'state', mountPath: MOUNTS.state }, readOnly('tokens', MOUNTS.tokens), tmpMount];
  const img = image(o, gpu ? 'pollen-supernode-gpu' : 'pollen-supernode');
  const gpus = gpu ? { 'nvidia.com/gpu': String(o.gpusPerNode) } : {};
  const resources = {
    requests: { cpu: '1', memory: '2Gi', ...gpus },
    limits: { cpu: '4', memory: '8Gi', ...gpus },
  };
  const podLabels = labels('supernode', { 'app.kubernetes.io/instance': org });
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name: org, labels: podLabels },
    spec: {
      replicas: o.replicas,
      // Pods ORG-1 … ORG-N: the names `pollen token batch -n N --prefix ORG` gives its tokens.
      ordinals: { start: 1 },
      serviceName: org,
      podManagementPolicy: 'Parallel',
      selector: { matchLabels: podLabels },
      template: {
        metadata: { labels: podLabels },
        spec: podSpec({
          terminationGracePeriodSeconds: 60,
          initContainers: [
            container('enroll', img, {
              ...shell(supernodeEnrollScript()),
              env: kitEnv,
              volumeMounts: mounts,
              resources: {
                requests: { cpu: '100m', memory: '256Mi' },
                limits: { cpu: '1', memory: '512Mi' },
              },
            }),
          ],
          containers: [
            container('supernode', img, {
              ...shell(startScript()),
              workingDir: MOUNTS.state,
              env: [
                ...kitEnv,
                ...env({
                  POLLEN_METRICS_ADDRESS: opsAddress('SuperNode'),
                  POLLEN_LOG_FORMAT: 'json',
                  ...(gpu && { POLLEN_RESOURCES: `gpu=${o.gpusPerNode}` }),
                }),
              ],
              ...probes(metricsPort('SuperNode')),
              volumeMounts: mounts,
              resources,
            }),
          ],
          volumes: [secretVolume('tokens', tokenSecret(org)), tmpVolume],
          ...(gpu && { tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }] }),
        }),
      },
      // Each replica keeps its kit (key, certificate, node identity) across restarts.
      volumeClaimTemplates: [
        {
          metadata: { name: 'state' },
          spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: o.storage } } },
        },
      ],
    },
  };
}

/** The headless Service a StatefulSet names (the SuperNodes take no connection: no ports). */
function headless(org: string): K8sObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: org, labels: labels('supernode', { 'app.kubernetes.io/instance': org }) },
    spec: { clusterIP: 'None', selector: labels('supernode', { 'app.kubernetes.io/instance': org }) },
  };
}

const namespace = (name: string): K8sObject => ({
  apiVersion: 'v1',
  kind: 'Namespace',
  metadata: { name, labels: { [NAME_LABEL]: 'pollen' } },
});

// ---------------------------------------------------------------------------------------------
// Files

const yamlDocs = (objects: K8sObject[]) =>
  objects.map((obj) => stringify(obj, { lineWidth: 0, aliasDuplicateObjects: false })).join('---\n');

const kustomization = (fields: Record<string, unknown>) =>
  stringify({ apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', ...fields });

const HEADER = '# Generated by `pollen deploy kubernetes`; review, then apply (docs/deployment.md).\n';

/** Every organisation (CPU first, then GPU) with whether its SuperNodes get GPUs. */
export const sites = (o: KubernetesOptions) => [
  ...o.orgs.map((org) => ({ org, gpu: false })),
  ...o.gpuOrgs.map((org) => ({ org, gpu: true })),
];

function places(o: KubernetesOptions): PolicyPlaces {
  const port = new URL(o.databaseUrl).port;
  return {
    cloudNamespace: o.cloudNamespace,
    siteNamespaces: sites(o)
      .map((s) => siteNamespace(s.org))
      .sort(),
    externalSites: o.externalSites,
    monitoringNamespace: o.monitoringNamespace,
    databasePort: port ? Number(port) : 5432,
  };
}

/** base/cloud, base/site and overlays/cloud, overlays/ORG: Kustomize folders. */
export function kubernetesFiles(o: KubernetesOptions): DeployFile[] {
  const p = places(o);
  const yamlFile = (path: string, objects: K8sObject[]) => file(path, HEADER + yamlDocs(objects));
  const files = [
    yamlFile('base/cloud/superlink.yaml', superlinkObjects(o)),
    yamlFile('base/cloud/cert-service.yaml', certServiceObjects(o)),
    yamlFile('base/cloud/network-policies.yaml', [
      defaultDeny(),
      allowDns(),
      componentPolicy('superlink', p),
      componentPolicy('cert-service', p),
    ]),
    file(
      'base/cloud/kustomization.yaml',
      kustomization({ resources: ['superlink.yaml', 'cert-service.yaml', 'network-policies.yaml'] }),
    ),
    yamlFile('base/site/network-policies.yaml', [defaultDeny(), allowDns(), componentPolicy('site', p)]),
    file('base/site/kustomization.yaml', kustomization({ resources: ['network-policies.yaml'] })),
    yamlFile('overlays/cloud/namespace.yaml', [namespace(o.cloudNamespace)]),
    file(
      'overlays/cloud/kustomization.yaml',
      kustomization({ namespace: o.cloudNamespace, resources: ['namespace.yaml', '../../base/cloud'] }),
    ),
  ];
  for (const { org, gpu } of sites(o)) {
    files.push(
      yamlFile(`overlays/${org}/namespace.yaml`, [namespace(siteNamespace(org))]),
      yamlFile(`overlays/${org}/supernodes.yaml`, [supernodeStatefulSet(o, org, gpu), headless(org)]),
      file(
        `overlays/${org}/kustomization.yaml`,
        kustomization({
          namespace: siteNamespace(org),
          resources: ['namespace.yaml', '../../base/site', 'supernodes.yaml'],
        }),
      ),
    );
  }
  return files;
}
