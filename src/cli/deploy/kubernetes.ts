import { isIP } from 'node:net';
import {
  CLOUD_SECRETS,
  KUBERNETES_DEFAULTS,
  kubernetesFiles,
  siteNamespace,
  tokenSecret,
} from '../../deploy/kubernetes.js';
import { PollenError } from '../../errors.js';
import type { Output } from '../output.js';
import { type DeployOutputOptions, writeDeployFiles } from './write.js';

export interface DeployKubernetesOptions extends DeployOutputOptions {
  org?: string[];
  gpuOrg?: string[];
  superlinkHost: string;
  certServiceUrl: string;
  database: string;
  replicas?: string;
  gpusPerNode?: string;
  namespace?: string;
  registry?: string;
  tag?: string;
  certServiceReplicas?: string;
  monitoringNamespace?: string;
  externalSites?: string;
  storage?: string;
}

const invalid = (message: string, hint: string) => new PollenError('INVALID_ARGUMENT', message, { hint });

/** Organisations name namespaces, StatefulSets and pods: DNS labels, short enough for pod names. */
function kubernetesOrgs(orgs: string[]): string[] {
  for (const org of orgs)
    if (!/^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$/.test(org))
      throw invalid(
        `"${org}" is not usable as a Kubernetes name`,
        'Use lower-case letters, digits and "-" (at most 40, starting and ending with a letter or digit).',
      );
  const twice = orgs.find((org, i) => orgs.indexOf(org) !== i);
  if (twice) throw invalid(`the organisation ${twice} is given twice`, 'Name each organisation once.');
  return orgs;
}

function count(flag: string, value: string | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > 1000)
    throw invalid(`${flag} ${value} is not a number from ${min} to 1000`, `Give ${flag} a whole number.`);
  return n;
}

/** The PostgreSQL URL goes into the manifests' Secret instructions: it must hold no password. */
function databaseUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw invalid(`--database ${value} is not a URL`, 'Give postgres://USER@HOST:PORT/DATABASE.');
  }
  if (!/^postgres(ql)?:$/.test(url.protocol) || !url.hostname || !url.username)
    throw invalid(
      `--database ${value} is not a PostgreSQL URL with a user and a host`,
      'Give postgres://USER@HOST:PORT/DATABASE: the Certificate Service replicas share that store.',
    );
  if (url.password)
    throw invalid(
      '--database holds a password',
      `Leave it out: the pods read it from the Secret ${CLOUD_SECRETS.database} (key password).`,
    );
  return value;
}

function httpsUrl(value: string): string {
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {}
  if (url?.protocol !== 'https:')
    throw invalid(
      `--cert-service-url ${value} is not an https URL`,
      'Give https://HOST:PORT, as sites reach it.',
    );
  return value;
}

function cidrs(value: string | undefined): string[] {
  if (!value) return [];
  return value.split(',').map((c) => {
    const [ip, bits] = c.trim().split('/');
    if (!ip || !isIP(ip) || !/^\d+$/.test(bits ?? ''))
      throw invalid(
        `--external-sites ${c} is not a CIDR`,
        'Give networks such as 10.77.0.0/24, comma-separated.',
      );
    return c.trim();
  });
}

/** `pollen deploy kubernetes`: Kustomize bases and overlays for the cloud side and each site. */
export async function deployKubernetes(o: DeployKubernetesOptions, out: Output): Promise<void> {
  const orgs = kubernetesOrgs(o.org ?? []);
  const gpuOrgs = kubernetesOrgs(o.gpuOrg ?? []);
  if (orgs.length + gpuOrgs.length === 0)
    throw new PollenError('USAGE', 'Name at least one organisation with --org NAME or --gpu-org NAME');
  kubernetesOrgs([...orgs, ...gpuOrgs]);
  const replicas = count('--replicas', o.replicas, KUBERNETES_DEFAULTS.replicas, 0);
  const files = kubernetesFiles({
    ...KUBERNETES_DEFAULTS,
    orgs,
    gpuOrgs,
    replicas,
    gpusPerNode: count('--gpus-per-node', o.gpusPerNode, KUBERNETES_DEFAULTS.gpusPerNode, 1),
    cloudNamespace: o.namespace ?? KUBERNETES_DEFAULTS.cloudNamespace,
    registry: o.registry ?? KUBERNETES_DEFAULTS.registry,
    tag: o.tag ?? KUBERNETES_DEFAULTS.tag,
    superlinkHost: o.superlinkHost,
    certServiceUrl: httpsUrl(o.certServiceUrl),
    certServiceReplicas: count(
      '--cert-service-replicas',
      o.certServiceReplicas,
      KUBERNETES_DEFAULTS.certServiceReplicas,
      1,
    ),
    databaseUrl: databaseUrl(o.database),
    monitoringNamespace: o.monitoringNamespace ?? KUBERNETES_DEFAULTS.monitoringNamespace,
    externalSites: cidrs(o.externalSites),
    storage: o.storage ?? KUBERNETES_DEFAULTS.storage,
  });
  const first = [...orgs, ...gpuOrgs][0]!;
  writeDeployFiles('kubernetes', o, files, out, [
    'before applying, make the Secrets the pods mount (docs/deployment.md, Kubernetes):',
    `  ${o.namespace ?? KUBERNETES_DEFAULTS.cloudNamespace}: ${Object.values(CLOUD_SECRETS).join(', ')}`,
    `  each organisation's namespace: its tokens, e.g. ${tokenSecret(first)} in ${siteNamespace(first)} from pollen token batch -n ${replicas} --prefix ${first} --org ${first} -o tokens/`,
    'render and check: kubectl kustomize OUT/overlays/cloud; apply: kubectl apply -k OUT/overlays/cloud',
  ]);
}
