import {
  CERT_SERVICE,
  COMPOSE_DEFAULTS,
  type ComposeOptions,
  composeFiles,
  SUPERLINK,
} from '../../deploy/compose.js';
import { PollenError } from '../../errors.js';
import type { Output } from '../output.js';
import { type DeployOutputOptions, writeDeployFiles } from './write.js';

export interface DeployComposeOptions extends DeployOutputOptions {
  site?: string[];
  gpuSite?: string[];
  imagePrefix?: string;
  tag?: string;
  buildContext?: string;
  certServiceHost?: string[];
  superlinkHost?: string[];
  keycloakUrl?: string;
  realm?: string;
  identityConfig?: string;
  keycloak: boolean;
}

const invalid = (message: string, hint: string) => new PollenError('INVALID_ARGUMENT', message, { hint });

/** Names the file already gives a service (a site may not take one). */
const RESERVED = new Set([CERT_SERVICE, SUPERLINK, 'keycloak', 'keycloak-db']);

/** Site names become service, volume and DNS names: lower-case DNS labels, each once. */
function siteNames(sites: string[]): void {
  const seen = new Set<string>();
  for (const s of sites) {
    if (!/^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?$/.test(s))
      throw invalid(
        `site name "${s}" cannot name a compose service`,
        'Use lower-case letters, digits and hyphens (a DNS label), e.g. --site hospital-a.',
      );
    if (RESERVED.has(s) || s.endsWith('-dcgm-exporter'))
      throw invalid(`site name "${s}" is taken by the file's own services`, 'Choose another site name.');
    if (seen.has(s)) throw invalid(`site "${s}" is named twice`, 'Give each site once.');
    seen.add(s);
  }
}

/** The generator's options from the command line, checked. */
export function composeOptions(o: DeployComposeOptions): ComposeOptions {
  const sites = o.site ?? [];
  const gpuSites = o.gpuSite ?? [];
  if (sites.length + gpuSites.length === 0)
    throw new PollenError('USAGE', 'a federation needs at least one site', {
      hint: 'Give --site NAME (repeatable) or --gpu-site NAME.',
    });
  siteNames([...sites, ...gpuSites]);
  if (!o.keycloak && o.keycloakUrl !== undefined)
    throw new PollenError('USAGE', '--keycloak-url and --no-keycloak contradict each other', {
      hint: 'Drop one of them.',
    });
  if (o.keycloakUrl !== undefined && !/^https:\/\/[^/\s]+$/.test(o.keycloakUrl))
    throw invalid(
      `--keycloak-url ${o.keycloakUrl} is not an https origin`,
      'Give the address browsers reach Keycloak at, e.g. --keycloak-url https://id.example.org.',
    );
  return {
    sites,
    gpuSites,
    imagePrefix: o.imagePrefix ?? COMPOSE_DEFAULTS.imagePrefix,
    tag: o.tag ?? COMPOSE_DEFAULTS.tag,
    ...(o.buildContext !== undefined && { buildContext: o.buildContext }),
    certServiceHosts: o.certServiceHost ?? [],
    superlinkHosts: o.superlinkHost ?? [],
    ...(o.keycloak && { keycloakUrl: o.keycloakUrl ?? 'https://id.example.org' }),
    realmFile: o.realm ?? COMPOSE_DEFAULTS.realmFile,
    identityFile: o.identityConfig ?? COMPOSE_DEFAULTS.identityFile,
  };
}

/** `pollen deploy compose`: compose.yaml for a federation on one host. */
export async function deployCompose(o: DeployComposeOptions, out: Output): Promise<void> {
  const options = composeOptions(o);
  const participants = [SUPERLINK, ...options.sites, ...options.gpuSites];
  const keycloak =
    options.keycloakUrl !== undefined
      ? `, ./secrets/keycloak_db_password.txt, ./secrets/keycloak_admin_password.txt ${options.realmFile} and ${options.identityFile} (copies of deploy/keycloak/)`
      : '';
  writeDeployFiles('compose', o, composeFiles(options), out, [
    `next: beside compose.yaml put ./ca (pollen cert init), ./secrets/api_key.txt (pollen cert api-key) and ./secrets/{${participants.join(',')}}.token (pollen token generate)${keycloak}; then: docker compose up -d`,
  ]);
}
