import type { TokenClaims } from '../token.js';

// The words of a startup kit: participant types, admin roles, endpoint schemes and file names.

export const KIT_TYPES = ['client', 'server', 'relay', 'admin'] as const;
export type KitType = (typeof KIT_TYPES)[number];
export function isKitType(v: string): v is KitType {
  return (KIT_TYPES as readonly string[]).includes(v);
}

/** Roles an admin (a person using the CLI / dashboard) can have in a kit. */
export const ADMIN_ROLES = ['lead', 'member', 'org_admin', 'project_admin'] as const;
export type AdminRole = (typeof ADMIN_ROLES)[number];

export const ENDPOINT_SCHEMES = ['grpc', 'grpcs', 'https', 'tcp'] as const;
export type EndpointScheme = (typeof ENDPOINT_SCHEMES)[number];

/** The token `subject_type` that enrolls a kit of this type (an admin is a `user`). */
export function tokenSubjectType(type: KitType): TokenClaims['pollen']['subject_type'] {
  return type === 'admin' ? 'user' : type;
}

/** File and folder names inside a kit (paths are relative to the kit folder, POSIX style). */
export const KIT_PATHS = {
  startup: 'startup',
  local: 'local',
  transfer: 'transfer',
  readme: 'readme.txt',
  log: 'log.txt',
  pid: 'pollen.pid',
  enrollmentConfig: 'startup/enrollment.json',
  token: 'startup/enrollment_token',
  state: 'startup/enrollment_state.json',
  rootCa: 'startup/rootCA.pem',
  chain: 'startup/chain.pem',
  startScript: 'startup/start.sh',
  subStartScript: 'startup/sub_start.sh',
  stopScript: 'startup/stop.sh',
  /** The Python environment a site's apps need (pip format), checked by start.sh. */
  requirements: 'startup/requirements.txt',
} as const;

/** `startup/fed_client.json`, `fed_server.json`, `fed_relay.json` or `fed_admin.json`. */
export function configFileName(type: KitType): string {
  return `fed_${type}.json`;
}

/** The certificate and key a participant NAME keeps in startup/. */
export function certFileNames(name: string): { cert: string; key: string } {
  return { cert: `${name}.crt`, key: `${name}.key` };
}
