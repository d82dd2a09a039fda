/**
 * Writes deploy/systemd/, deploy/firewall/, deploy/vpn/ (and deploy/nginx/) for the sample project
 * of docs/deployment.md: what `pollen deploy …` generates, so reviewers read real artefacts.
 * test/deploy-samples.test.ts checks they are current.
 *
 *   npx tsx scripts/gen-deploy-samples.ts
 *
 * Each generator adds one section: a folder under deploy/ and the files its generator returns.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { DeployFile } from '../src/deploy/files.js';
import { nginxDefaults, nginxFiles } from '../src/deploy/nginx.js';
import { SYSTEMD_COMPONENTS, systemdFiles, unitDefaults } from '../src/deploy/systemd.js';

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

/** The sections: a folder under deploy/ and its files. */
export const SECTIONS: Record<string, () => DeployFile[]> = {
  systemd: systemdSection,
  nginx: nginxSection,
};

/** Every sample file, by its path under deploy/. */
export function deploySamples(): Map<string, DeployFile> {
  const files = new Map<string, DeployFile>();
  for (const [folder, section] of Object.entries(SECTIONS))
    for (const f of section()) files.set(`${folder}/${f.path}`, f);
  return files;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const folder of Object.keys(SECTIONS))
    rmSync(resolve(DEPLOY_DIR, folder), { recursive: true, force: true });
  const files = deploySamples();
  for (const [path, f] of files) {
    mkdirSync(dirname(resolve(DEPLOY_DIR, path)), { recursive: true });
    writeFileSync(resolve(DEPLOY_DIR, path), f.content, { mode: f.mode });
  }
  console.log(`wrote ${files.size} files under ${DEPLOY_DIR}`);
}
