/**
 * systemd units for Pollen's long-running components (`pollen deploy systemd`). Each unit runs as a
 * dedicated system user (created by a sysusers.d file beside it), sees the file system read-only
 * except its own state, holds no capability unless a port below 1024 needs one, and is ready only
 * once its health endpoint answers (`ExecStartPost=pollen ready`). The hardening options are the
 * ones `systemd-analyze security` scores, minus those Node.js cannot run under (noted inline).
 */
import { type DeployFile, file } from './files.js';
import { CERT_SERVICE_PORT, metricsPort } from './port-map.js';

export const SYSTEMD_COMPONENTS = ['superlink', 'supernode', 'cert-service'] as const;
export type SystemdComponent = (typeof SYSTEMD_COMPONENTS)[number];

const TITLE = {
  superlink: 'SuperLink',
  supernode: 'SuperNode',
  'cert-service': 'Certificate Service',
} as const satisfies Record<SystemdComponent, 'SuperLink' | 'SuperNode' | 'Certificate Service'>;

interface CommonUnitOptions {
  /** The `pollen` executable on the host (npm's global bin: /usr/bin/pollen with NodeSource's Node.js). */
  pollen: string;
  /** The system user (and group) the service runs as. */
  user: string;
  /** The ops listener (`--metrics-address`): `pollen ready` polls its /readyz. */
  metricsAddress: string;
  /** An optional file of POLLEN_* variables (secrets stay out of the unit). */
  environmentFile: string;
}

/** A SuperLink or a SuperNode: `pollen start KIT` enrolls or renews, then runs the participant. */
export interface KitUnitOptions extends CommonUnitOptions {
  component: 'superlink' | 'supernode';
  /** The installed startup kit; the participant keeps its state in KIT/local, so it is writable. */
  kit: string;
  /** SuperNode only: a virtual environment for Python apps (POLLEN_PYTHON=ENV/bin/python). */
  pythonEnv?: string;
  /** SuperNode only: let app processes reach GPUs (/dev/nvidia*); otherwise no devices at all. */
  gpus?: boolean;
}

/** The Certificate Service: `pollen cert-service` over a CA folder and a workspace. */
export interface CertServiceUnitOptions extends CommonUnitOptions {
  component: 'cert-service';
  /** The CA folder (read-only for the service). */
  ca: string;
  /** The service's state and TLS certificate (writable). */
  workspace: string;
  /** The admin API key file from `pollen cert api-key`. */
  apiKeyFile: string;
  /** DNS names or addresses the service is reached at. */
  hostnames: string[];
  port: number;
}

export type UnitOptions = KitUnitOptions | CertServiceUnitOptions;

/** Defaults an operator usually keeps (the layout docs/deployment.md installs). */
export function unitDefaults(component: SystemdComponent): CommonUnitOptions {
  return {
    pollen: '/usr/bin/pollen',
    user: 'pollen',
    metricsAddress: `127.0.0.1:${metricsPort(TITLE[component])}`,
    environmentFile: `/etc/pollen/${component}.env`,
  };
}

export const DEFAULT_CERT_SERVICE_PORT = CERT_SERVICE_PORT;

/** The unit file name for a component: `pollen-superlink.service`, … */
export const unitName = (component: SystemdComponent) => `pollen-${component}.service`;

/** The unit and the sysusers.d entry that creates its user. */
export function systemdFiles(o: UnitOptions): DeployFile[] {
  return [
    file(unitName(o.component), systemdUnit(o)),
    file(`pollen-${o.component}.sysusers.conf`, sysusers(o.user)),
  ];
}

/** `systemd-sysusers` creates the service's user and group on install (no login, no home). */
function sysusers(user: string): string {
  return [
    '# Install as /etc/sysusers.d/pollen.conf, then run: systemd-sysusers',
    `u ${user} - "Pollen federated learning" /nonexistent /usr/sbin/nologin`,
    '',
  ].join('\n');
}

const quote = (arg: string) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `"${arg.replace(/(["\\])/g, '\\$1')}"`);

function execStart(o: UnitOptions): string {
  if (o.component !== 'cert-service') return [o.pollen, 'start', o.kit].map(quote).join(' ');
  return [
    o.pollen,
    'cert-service',
    '--ca',
    o.ca,
    '--workspace',
    o.workspace,
    '--api-key-file',
    o.apiKeyFile,
    '--port',
    String(o.port),
    ...o.hostnames.flatMap((h) => ['--hostname', h]),
  ]
    .map(quote)
    .join(' ');
}

/** Ports below 1024 need CAP_NET_BIND_SERVICE; nothing else needs a capability. */
function capabilities(o: UnitOptions): string {
  return o.component === 'cert-service' && o.port < 1024 ? 'CAP_NET_BIND_SERVICE' : '';
}

function writablePaths(o: UnitOptions): string[] {
  return o.component === 'cert-service' ? [o.workspace] : [o.kit];
}

function environment(o: UnitOptions): string[] {
  const vars = [`POLLEN_METRICS_ADDRESS=${o.metricsAddress}`, 'POLLEN_LOG_FORMAT=json'];
  if (o.component === 'supernode' && o.pythonEnv) vars.push(`POLLEN_PYTHON=${o.pythonEnv}/bin/python`);
  return vars.map((v) => `Environment=${quote(v)}`);
}

/** What app processes may touch: none of the host's devices, or the NVIDIA ones for GPU sites. */
function devices(o: UnitOptions): string[] {
  if (o.component === 'supernode' && o.gpus)
    return [
      '# GPU site: app processes open /dev/nvidia*; every other device stays hidden.',
      'DevicePolicy=closed',
      'DeviceAllow=char-nvidia-frontend rw',
      'DeviceAllow=char-nvidia-uvm rw',
      'DeviceAllow=char-nvidiactl rw',
    ];
  return ['PrivateDevices=yes'];
}

/**
 * Denied system call groups. A SuperNode keeps @resources: its app processes inherit the filter,
 * and numerical libraries pin threads (sched_setaffinity) and lower priorities (nice).
 */
function syscallDenials(o: UnitOptions): string[] {
  return [
    o.component === 'supernode'
      ? 'SystemCallFilter=~@privileged'
      : 'SystemCallFilter=~@privileged @resources',
  ];
}

/** The unit file. */
export function systemdUnit(o: UnitOptions): string {
  const title = TITLE[o.component];
  const cap = capabilities(o);
  return `${[
    `# ${unitName(o.component)}: generated by \`pollen deploy systemd\`; review, then install as`,
    `# /etc/systemd/system/${unitName(o.component)} (docs/deployment.md).`,
    '[Unit]',
    `Description=Pollen ${title}`,
    'Wants=network-online.target',
    'After=network-online.target',
    '',
    '[Service]',
    'Type=exec',
    `User=${o.user}`,
    `Group=${o.user}`,
    `ExecStart=${execStart(o)}`,
    '# Started means ready: systemd waits until /readyz answers (store, TLS material, listeners).',
    `ExecStartPost=${quote(o.pollen)} ready ${o.metricsAddress} --timeout 60`,
    ...environment(o),
    `EnvironmentFile=-${o.environmentFile}`,
    `WorkingDirectory=${writablePaths(o)[0]}`,
    'Restart=on-failure',
    'RestartSec=5s',
    '# SIGTERM: in-flight requests finish, then the process exits.',
    'TimeoutStopSec=30s',
    'UMask=0077',
    '',
    '# Hardening (systemd-analyze security).',
    'NoNewPrivileges=yes',
    `CapabilityBoundingSet=${cap}`,
    `AmbientCapabilities=${cap}`,
    'ProtectSystem=strict',
    ...writablePaths(o).map((p) => `ReadWritePaths=${p}`),
    'PrivateTmp=yes',
    'PrivateMounts=yes',
    'ProtectHome=yes',
    ...devices(o),
    'ProtectKernelTunables=yes',
    'ProtectKernelModules=yes',
    'ProtectKernelLogs=yes',
    'ProtectControlGroups=yes',
    'ProtectClock=yes',
    'ProtectHostname=yes',
    'ProtectProc=invisible',
    'ProcSubset=pid',
    'RestrictNamespaces=yes',
    'RestrictRealtime=yes',
    'RestrictSUIDSGID=yes',
    'LockPersonality=yes',
    'RemoveIPC=yes',
    'KeyringMode=private',
    // AF_NETLINK: glibc's getaddrinfo asks the kernel for the host's addresses through it when
    // Node resolves a name (AI_ADDRCONFIG).
    'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK',
    'SystemCallArchitectures=native',
    'SystemCallFilter=@system-service',
    ...syscallDenials(o),
    'SystemCallErrorNumber=EPERM',
    "# Not set: MemoryDenyWriteExecute (V8's JIT writes executable code), PrivateNetwork and",
    '# IPAddressDeny (the service is a network service), PrivateUsers (it would hide the user',
    '# that owns the state files from the service).',
  ].join('\n')}

[Install]
WantedBy=multi-user.target
`;
}
