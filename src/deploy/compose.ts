/**
 * A docker-compose file for a whole federation on one host (`pollen deploy compose`): the
 * Certificate Service, the SuperLink and sites that enroll themselves from their token (the shape
 * of FLARE's auto-scale workflow), GPU sites with NVIDIA's DCGM exporter beside them, and Keycloak
 * on PostgreSQL importing the realm export of `deploy/keycloak/realm.json`.
 *
 * Every Pollen service runs from the images of deploy/docker as the unprivileged user `pollen`,
 * with a read-only root file system, no capability, a tmpfs on /tmp and its state in a named
 * volume; keys, tokens and passwords come from compose secrets (files the operator makes), never
 * from the file or the environment. test/compose.test.ts runs the Pollen services' commands as
 * written, each in its own network namespace.
 */
import { Document, isMap, isScalar, type Pair, type YAMLMap } from 'yaml';
import { type DeployFile, file } from './files.js';
import { CERT_SERVICE_PORT, FLEET_PORT, metricsPort, portOf } from './port-map.js';

/** NVIDIA's DCGM exporter, pinned by tag (the registry's digest cannot be checked from here). */
export const DCGM_EXPORTER_IMAGE = 'nvcr.io/nvidia/k8s/dcgm-exporter:4.2.3-4.1.3-ubuntu22.04';
export const DCGM_EXPORTER_PORT = 9400;
export const KEYCLOAK_IMAGE = 'quay.io/keycloak/keycloak:26.0.7';
export const POSTGRES_IMAGE = 'postgres:16.6-bookworm';

export interface ComposeOptions {
  /** Sites without a GPU: one SuperNode each, named after the organisation. */
  sites: string[];
  /** Sites with NVIDIA GPUs: the GPU image, one GPU reserved, and a DCGM exporter. */
  gpuSites: string[];
  /** Images are PREFIX + superlink, cert-service, supernode, supernode-gpu, with `:TAG`. */
  imagePrefix: string;
  tag: string;
  /** The repository root, relative to the compose file: when set, `build:` names deploy/docker. */
  buildContext?: string;
  /** Names the Certificate Service's TLS certificate carries besides `cert-service`. */
  certServiceHosts: string[];
  /** Names the SuperLink's certificate carries besides `superlink`. */
  superlinkHosts: string[];
  /** Keycloak's public URL (behind the proxy that ends TLS); none: no Keycloak and no PostgreSQL. */
  keycloakUrl?: string;
  /** The realm export Keycloak imports, relative to the compose file. */
  realmFile: string;
  /** The SuperLink's `[identity.oidc]` section for that realm (with Keycloak), relative too. */
  identityFile: string;
}

export const COMPOSE_DEFAULTS = {
  imagePrefix: 'myorg/pollen-',
  tag: '0.1.0',
  certServiceHosts: [],
  superlinkHosts: [],
  realmFile: './keycloak/realm.json',
  identityFile: './keycloak/identity.toml',
} as const satisfies Partial<ComposeOptions>;

/** The service names other services (and the certificates) use: the compose network's DNS names. */
export const CERT_SERVICE = 'cert-service';
export const SUPERLINK = 'superlink';
const CONTROL_PORT = portOf('SuperLink', 'Control API + dashboard');

/** The compose secret holding a participant's enrollment token: ./secrets/NAME.token. */
export const tokenSecret = (name: string) => `${name}_token`;

type Dockerfile = 'superlink' | 'cert-service' | 'supernode' | 'supernode-gpu';

function image(o: ComposeOptions, dockerfile: Dockerfile): Record<string, unknown> {
  return {
    image: `${o.imagePrefix}${dockerfile}:${o.tag}`,
    ...(o.buildContext !== undefined && {
      build: { context: o.buildContext, dockerfile: `deploy/docker/Dockerfile.${dockerfile}` },
    }),
  };
}

/** What every Pollen container keeps: the image's user, a read-only root, nothing more. */
const HARDENED = {
  user: 'pollen',
  read_only: true,
  tmpfs: ['/tmp'],
  cap_drop: ['ALL'],
  security_opt: ['no-new-privileges:true'],
  restart: 'unless-stopped',
};

const ready = (component: 'SuperLink' | 'SuperNode' | 'Certificate Service') => ({
  test: ['CMD', 'pollen', 'ready', `127.0.0.1:${metricsPort(component)}`, '--timeout', '5'],
  interval: '30s',
  timeout: '10s',
  start_period: '60s',
  retries: 3,
});

/**
 * A participant's start: on first start the kit is made from the token (`pollen package`, the
 * token saved in the kit and spent by enrollment), then `pollen start` enrolls and runs it. A
 * restart finds the kit and goes straight to `pollen start`, which renews when due.
 */
/**
 * The participant's volume is the image's home, /var/lib/pollen: a new named volume takes the
 * owner of the image's folder (the user pollen), which a folder the image lacks (/kit) would not.
 */
const STATE = '/var/lib/pollen';
const KIT = `${STATE}/kit`;

function kitStart(kind: 'server' | 'client', name: string, packageArgs: string[]): string[] {
  const script = [
    'set -e',
    `test -f ${KIT}/startup/fed_${kind}.json || pollen package -n ${name} -t ${kind} \\`,
    ...packageArgs.map((a) => `  ${a} \\`),
    `  --cert-service https://${CERT_SERVICE}:${CERT_SERVICE_PORT} \\`,
    `  --token /run/secrets/${tokenSecret(name)} -o ${KIT} --force`,
    `exec pollen start ${KIT}`,
    '',
  ];
  return ['tini', '--', 'sh', '-c', script.join('\n')];
}

/**
 * The public names a service's certificate carries resolve to it inside the compose network too,
 * so containers (JupyterHub's notebooks) reach it by the name its certificate and tokens use.
 */
const aliases = (names: string[]) => (names.length > 0 ? { networks: { default: { aliases: names } } } : {});

function certService(o: ComposeOptions): Record<string, unknown> {
  return {
    ...image(o, 'cert-service'),
    ...HARDENED,
    // Appended to the image's `pollen cert-service --ca /ca --workspace … --api-key-file …`.
    command: [CERT_SERVICE, ...o.certServiceHosts].flatMap((h) => ['--hostname', h]),
    volumes: ['./ca:/ca:ro', `cert-service:${STATE}`],
    secrets: ['api_key'],
    ports: [`${CERT_SERVICE_PORT}:${CERT_SERVICE_PORT}`],
    ...aliases(o.certServiceHosts),
    healthcheck: ready('Certificate Service'),
  };
}

function superlink(o: ComposeOptions): Record<string, unknown> {
  return {
    ...image(o, 'superlink'),
    ...HARDENED,
    entrypoint: kitStart('server', SUPERLINK, [
      `-e grpcs://0.0.0.0:${FLEET_PORT}:${CONTROL_PORT}`,
      ...[SUPERLINK, ...o.superlinkHosts].map((h) => `--host ${h}`),
    ]),
    ...(o.keycloakUrl !== undefined && {
      // Researchers' Keycloak logins are accepted (docs/identity.md).
      environment: { POLLEN_IDENTITY_CONFIG: '/etc/pollen/identity.toml' },
    }),
    volumes: [
      `superlink:${STATE}`,
      ...(o.keycloakUrl !== undefined ? [`${o.identityFile}:/etc/pollen/identity.toml:ro`] : []),
    ],
    secrets: [tokenSecret(SUPERLINK)],
    ports: [`${FLEET_PORT}:${FLEET_PORT}`, `${CONTROL_PORT}:${CONTROL_PORT}`],
    ...aliases(o.superlinkHosts),
    depends_on: { [CERT_SERVICE]: { condition: 'service_healthy' } },
    healthcheck: ready('SuperLink'),
  };
}

/** NVIDIA's Container Toolkit hands the container GPUs it reserves here. */
const gpus = (count: number | 'all', capabilities: string[]) => ({
  deploy: { resources: { reservations: { devices: [{ driver: 'nvidia', count, capabilities }] } } },
});

function site(o: ComposeOptions, name: string, gpu: boolean): Record<string, unknown> {
  return {
    ...image(o, gpu ? 'supernode-gpu' : 'supernode'),
    ...HARDENED,
    entrypoint: kitStart('client', name, [`-e grpcs://${SUPERLINK}:${FLEET_PORT}`]),
    // The kit (certificate, key, node state) in kit/, the SuperNode's unpacked apps in supernode/.
    volumes: [`${name}:${STATE}`],
    secrets: [tokenSecret(name)],
    depends_on: { [SUPERLINK]: { condition: 'service_healthy' } },
    healthcheck: ready('SuperNode'),
    ...(gpu && gpus(1, ['gpu'])),
  };
}

/** One exporter per GPU host: GPU utilisation, memory and temperature for Prometheus. */
function dcgmExporter(): Record<string, unknown> {
  return {
    image: DCGM_EXPORTER_IMAGE,
    read_only: true,
    tmpfs: ['/tmp'],
    cap_drop: ['ALL'],
    security_opt: ['no-new-privileges:true'],
    restart: 'unless-stopped',
    ...gpus('all', ['gpu', 'utility']),
    // Prometheus on the host scrapes it; nothing else reaches it.
    ports: [`127.0.0.1:${DCGM_EXPORTER_PORT}:${DCGM_EXPORTER_PORT}`],
  };
}

function keycloakDb(): Record<string, unknown> {
  return {
    image: POSTGRES_IMAGE,
    user: 'postgres',
    read_only: true,
    tmpfs: ['/tmp', '/var/run/postgresql'],
    cap_drop: ['ALL'],
    security_opt: ['no-new-privileges:true'],
    restart: 'unless-stopped',
    environment: {
      POSTGRES_DB: 'keycloak',
      POSTGRES_USER: 'keycloak',
      POSTGRES_PASSWORD_FILE: '/run/secrets/keycloak_db_password',
    },
    volumes: ['keycloak-db:/var/lib/postgresql/data'],
    secrets: ['keycloak_db_password'],
    healthcheck: {
      test: ['CMD', 'pg_isready', '-U', 'keycloak', '-d', 'keycloak'],
      interval: '10s',
      timeout: '5s',
      retries: 5,
    },
  };
}

/**
 * Keycloak reads its passwords from the secrets' files (it takes them only from the environment,
 * so the entrypoint exports them inside the container). Not read-only: `kc.sh start` builds its
 * server into /opt/keycloak on the first start.
 */
function keycloak(url: string, realmFile: string): Record<string, unknown> {
  return {
    image: KEYCLOAK_IMAGE,
    cap_drop: ['ALL'],
    security_opt: ['no-new-privileges:true'],
    restart: 'unless-stopped',
    entrypoint: [
      '/bin/bash',
      '-c',
      [
        'export KC_DB_PASSWORD="$$(cat /run/secrets/keycloak_db_password)"',
        'export KC_BOOTSTRAP_ADMIN_PASSWORD="$$(cat /run/secrets/keycloak_admin_password)"',
        'exec /opt/keycloak/bin/kc.sh start --import-realm',
        '',
      ].join('\n'),
    ],
    environment: {
      KC_DB: 'postgres',
      KC_DB_URL: 'jdbc:postgresql://keycloak-db:5432/keycloak',
      KC_DB_USERNAME: 'keycloak',
      KC_BOOTSTRAP_ADMIN_USERNAME: 'admin',
      KC_HOSTNAME: url,
      // TLS ends at the reverse proxy in front (docs/deployment.md); it sets X-Forwarded-*.
      KC_HTTP_ENABLED: 'true',
      KC_PROXY_HEADERS: 'xforwarded',
      KC_HEALTH_ENABLED: 'true',
    },
    volumes: [`${realmFile}:/opt/keycloak/data/import/realm.json:ro`],
    secrets: ['keycloak_db_password', 'keycloak_admin_password'],
    ports: ['127.0.0.1:8080:8080'],
    depends_on: { 'keycloak-db': { condition: 'service_healthy' } },
    // The image has no curl: bash's /dev/tcp asks the management port's readiness.
    healthcheck: {
      test: [
        'CMD',
        'bash',
        '-c',
        [
          'exec 3<>/dev/tcp/127.0.0.1/9000',
          "printf 'GET /health/ready HTTP/1.0\\r\\n\\r\\n' >&3",
          'grep -q \'"UP"\' <&3',
          '',
        ].join('\n'),
      ],
      interval: '30s',
      timeout: '10s',
      start_period: '120s',
      retries: 3,
    },
  };
}

/** The compose file's content as data (what test/compose.test.ts reads back from the YAML). */
export function composeProject(o: ComposeOptions): Record<string, unknown> {
  const participants = [SUPERLINK, ...o.sites, ...o.gpuSites];
  const services: Record<string, unknown> = {
    [CERT_SERVICE]: certService(o),
    [SUPERLINK]: superlink(o),
    ...Object.fromEntries(o.sites.map((s) => [s, site(o, s, false)])),
    ...Object.fromEntries(o.gpuSites.map((s) => [s, site(o, s, true)])),
    ...Object.fromEntries(o.gpuSites.map((s) => [`${s}-dcgm-exporter`, dcgmExporter()])),
    ...(o.keycloakUrl !== undefined && {
      'keycloak-db': keycloakDb(),
      keycloak: keycloak(o.keycloakUrl, o.realmFile),
    }),
  };
  const volumes = [CERT_SERVICE, ...participants, ...(o.keycloakUrl !== undefined ? ['keycloak-db'] : [])];
  const secretFiles: Record<string, string> = {
    api_key: './secrets/api_key.txt',
    ...Object.fromEntries(participants.map((p) => [tokenSecret(p), `./secrets/${p}.token`])),
    ...(o.keycloakUrl !== undefined && {
      keycloak_db_password: './secrets/keycloak_db_password.txt',
      keycloak_admin_password: './secrets/keycloak_admin_password.txt',
    }),
  };
  return {
    name: 'pollen',
    services,
    volumes: Object.fromEntries(volumes.map((v) => [v, {}])),
    secrets: Object.fromEntries(Object.entries(secretFiles).map(([k, f]) => [k, { file: f }])),
  };
}

const SERVICE_NOTES: Record<string, string> = {
  [CERT_SERVICE]:
    ' The Certificate Service: the CA folder read-only, the admin API key a secret, state a volume.',
  [SUPERLINK]:
    ' The SuperLink: on first start its server kit is made from its token and enrolled; the kit (and\n the store in it) lives in a volume.',
  keycloak: ' Keycloak on PostgreSQL, importing the realm export on its first start.',
};

function comment(doc: Document, path: string[], text: string): void {
  const parent = doc.getIn(path.slice(0, -1), true);
  if (!isMap(parent)) return;
  const pair = (parent as YAMLMap).items.find((p: Pair) => isScalar(p.key) && p.key.value === path.at(-1)) as
    | Pair<{ commentBefore?: string }>
    | undefined;
  if (pair?.key) pair.key.commentBefore = text;
}

/** compose.yaml, commented. */
export function composeFiles(o: ComposeOptions): DeployFile[] {
  const doc = new Document(composeProject(o), { aliasDuplicateObjects: false });
  doc.commentBefore = [
    ' compose.yaml: generated by `pollen deploy compose`; review, then run `docker compose up -d`',
    ' beside ./ca (the CA folder), ./secrets (api_key.txt, one NAME.token per participant' +
      (o.keycloakUrl !== undefined ? `,\n keycloak_*_password.txt) and ${o.realmFile}` : ')'),
    ' (docs/deployment.md, "Docker Compose").',
  ].join('\n');
  for (const [name, text] of Object.entries(SERVICE_NOTES)) comment(doc, ['services', name], text);
  for (const s of o.gpuSites)
    comment(
      doc,
      ['services', `${s}-dcgm-exporter`],
      ' No SYS_ADMIN: the basic GPU metrics, not the profiling ones.',
    );
  for (const s of o.sites)
    comment(doc, ['services', s], ` A site: its kit is made from its token and enrolls on first start.`);
  for (const s of o.gpuSites)
    comment(
      doc,
      ['services', s],
      " A GPU site: one GPU reserved through the NVIDIA Container Toolkit (the image sets\n POLLEN_RESOURCES=gpu=1), and NVIDIA's DCGM exporter beside it for Prometheus.",
    );
  return [file('compose.yaml', doc.toString({ lineWidth: 100 }))];
}
