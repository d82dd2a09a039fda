/**
 * Writes deploy/systemd/, deploy/firewall/, deploy/vpn/, deploy/kubernetes/, deploy/compose/ (and deploy/nginx/) for the sample project
 * of docs/deployment.md: what `pollen deploy …` generates, so reviewers read real artefacts.
 * test/deploy-samples.test.ts checks they are current.
 *
 *   npx tsx scripts/gen-deploy-samples.ts
 *
 * Each generator adds one section: a folder under deploy/ and the files its generator returns.
 */

import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { COMPOSE_DEFAULTS, composeFiles } from '../src/deploy/compose.js';
import type { DeployFile } from '../src/deploy/files.js';
import { type FirewallOptions, firewallFiles } from '../src/deploy/firewall.js';
import { KUBERNETES_DEFAULTS, kubernetesFiles } from '../src/deploy/kubernetes.js';
import { nginxDefaults, nginxFiles } from '../src/deploy/nginx.js';
import { OPENVPN_DEFAULTS, openvpnFiles } from '../src/deploy/openvpn.js';
import { portMapTable } from '../src/deploy/port-map.js';
import { SYSTEMD_COMPONENTS, systemdFiles, unitDefaults } from '../src/deploy/systemd.js';
import { WIREGUARD_DEFAULTS, wireguardFiles } from '../src/deploy/wireguard.js';

export const DEPLOY_DIR = resolve(import.meta.dirname, '..', 'deploy');

/** The sample project: one cloud host for the SuperLink and the Certificate Service, two sites. */
export const SAMPLE = {
  superlinkHost: 'superlink.example.org',
  certServiceHost: 'certs.example.org',
  orgs: ['hospital-a', 'hospital-b'],
  /** nginx's names: fleet., certs., control. and dashboard. under it. */
  domain: 'pollen.example.org',
  /** The cloud host's public address (documentation range, RFC 5737). */
  cloudAddress: '203.0.113.10',
} as const;

function systemdSection(): DeployFile[] {
  return SYSTEMD_COMPONENTS.flatMap((component) =>
    systemdFiles(
      component === 'cert-service'
        ? {
            ...unitDefaults(component),
            component,
            ca: '/etc/pollen/ca',
            workspace: '/var/lib/pollen/cert-service',
            apiKeyFile: '/etc/pollen/cert-service/api_key.txt',
            hostnames: [SAMPLE.certServiceHost],
            port: 8443,
          }
        : component === 'superlink'
          ? { ...unitDefaults(component), component, kit: '/var/lib/pollen/superlink' }
          : {
              ...unitDefaults(component),
              component,
              kit: `/var/lib/pollen/${SAMPLE.orgs[0]}`,
              pythonEnv: '/opt/pollen-venv',
            },
    ),
  );
}

/** nginx on the cloud host: TLS passed through by SNI name, the dashboard ending at nginx. */
function nginxSection(): DeployFile[] {
  return nginxFiles({
    ...nginxDefaults(),
    domain: SAMPLE.domain,
    listenAddress: SAMPLE.cloudAddress,
    dashboard: {
      cert: `/etc/letsencrypt/live/dashboard.${SAMPLE.domain}/fullchain.pem`,
      key: `/etc/letsencrypt/live/dashboard.${SAMPLE.domain}/privkey.pem`,
      rootCa: '/etc/pollen/rootCA.pem',
    },
  });
}

/** The cloud host (SuperLink + Certificate Service, VPN hub) and a site, both over WireGuard. */
function firewallSection(): DeployFile[] {
  const common: Omit<FirewallOptions, 'roles' | 'restrictOutbound'> = {
    vpn: { kind: 'wireguard', interface: 'wg0' },
    sshFrom: ['any'],
    researchersFrom: [],
  };
  const at = (folder: string) => (f: DeployFile) => ({ ...f, path: `${folder}/${f.path}` });
  return [
    ...firewallFiles({ ...common, roles: ['superlink', 'cert-service'], restrictOutbound: false }).map(
      at('cloud'),
    ),
    ...firewallFiles({ ...common, roles: ['site'], restrictOutbound: true }).map(at('site')),
  ];
}

/**
 * Sample keys are derived from their purpose so the files stay the same from run to run: they are
 * published here, so they protect nothing. `pollen deploy wireguard` makes random ones.
 */
const sampleKeys = (purpose: string) => createHash('sha256').update(`pollen sample: ${purpose}`).digest();

function vpnSection(): DeployFile[] {
  const sample = { orgs: [...SAMPLE.orgs], endpoint: SAMPLE.superlinkHost };
  const warning = '# SAMPLE: these keys are published in the Pollen repository; never use them.\n';
  const under = (folder: string) => (f: DeployFile) => ({
    ...f,
    path: `${folder}/${f.path}`,
    content: f.mode === 0o600 ? warning + f.content : f.content,
  });
  return [
    ...wireguardFiles({ ...WIREGUARD_DEFAULTS, ...sample }, sampleKeys).files.map(under('wireguard')),
    // A fixed date, so the certificates (and their fingerprints) stay the same from run to run.
    ...openvpnFiles(
      { ...OPENVPN_DEFAULTS, ...sample, now: new Date('2026-01-01T00:00:00Z') },
      sampleKeys,
    ).files.map(under('openvpn')),
  ];
}

/**
 * A federation on one host: the sample's two sites, a third with a GPU, Keycloak importing
 * deploy/keycloak/realm.json, images built from this repository.
 */
function composeSection(): DeployFile[] {
  return composeFiles({
    ...COMPOSE_DEFAULTS,
    sites: [...SAMPLE.orgs],
    gpuSites: ['hospital-c'],
    buildContext: '../..',
    certServiceHosts: [SAMPLE.certServiceHost],
    superlinkHosts: [SAMPLE.superlinkHost],
    keycloakUrl: 'https://id.example.org',
    realmFile: '../keycloak/realm.json',
    identityFile: '../keycloak/identity.toml',
  });
}

/** Kubernetes: the cloud side, the two organisations, and a third whose SuperNodes have GPUs. */
function kubernetesSection(): DeployFile[] {
  return kubernetesFiles({
    ...KUBERNETES_DEFAULTS,
    orgs: [...SAMPLE.orgs],
    gpuOrgs: ['gpu-lab'],
    registry: 'registry.example.org/pollen',
    superlinkHost: SAMPLE.superlinkHost,
    certServiceUrl: `https://${SAMPLE.certServiceHost}:8443`,
    databaseUrl: 'postgres://pollen@postgres.pollen.svc:5432/pollen',
    // The WireGuard network of section 5: sites that run outside the cluster.
    externalSites: ['10.77.0.0/24'],
  });
}

/** The sections: a folder under deploy/ and its files. */
export const SECTIONS: Record<string, () => DeployFile[]> = {
  systemd: systemdSection,
  nginx: nginxSection,
  firewall: firewallSection,
  vpn: vpnSection,
  compose: composeSection,
  kubernetes: kubernetesSection,
};

/** Every sample file, by its path under deploy/. */
export function deploySamples(): Map<string, DeployFile> {
  const files = new Map<string, DeployFile>();
  for (const [folder, section] of Object.entries(SECTIONS))
    for (const f of section()) files.set(`${folder}/${f.path}`, f);
  return files;
}

export const NETWORK_DOC = resolve(import.meta.dirname, '..', 'docs', 'network.md');

/** docs/network.md with the port map table between its markers rendered from the module. */
export function withPortMap(doc: string): string {
  return doc.replace(
    /(<!-- port-map:[^\n]*-->\n)[\s\S]*?(<!-- \/port-map -->)/,
    (_m, open: string, close: string) => `${open}${portMapTable()}\n${close}`,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  writeFileSync(NETWORK_DOC, withPortMap(readFileSync(NETWORK_DOC, 'utf8')));
  for (const folder of Object.keys(SECTIONS))
    rmSync(resolve(DEPLOY_DIR, folder), { recursive: true, force: true });
  const files = deploySamples();
  for (const [path, f] of files) {
    mkdirSync(dirname(resolve(DEPLOY_DIR, path)), { recursive: true });
    writeFileSync(resolve(DEPLOY_DIR, path), f.content, { mode: f.mode });
  }
  console.log(`wrote ${files.size} files under ${DEPLOY_DIR}`);
}
