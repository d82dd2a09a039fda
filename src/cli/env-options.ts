/**
 * The options that have an environment variable, made in one place so each flag and its variable
 * always go together (commander's `.env()`: a flag on the command line wins over the variable).
 */
import { type Command, Option } from 'commander';

/** `-c, --ca DIR` / POLLEN_CA_PATH: the CA folder made by `pollen cert init`. */
export const caOption = (help = 'the CA folder made by `pollen cert init`') =>
  new Option('-c, --ca <dir>', help).env('POLLEN_CA_PATH');

/** `--cert-service URL` / POLLEN_CERT_SERVICE_URL. */
export const certServiceOption = (help = 'the Certificate Service URL, https://HOST:8443') =>
  new Option('--cert-service <url>', help).env('POLLEN_CERT_SERVICE_URL');

/** `--api-key KEY` / POLLEN_API_KEY: an admin API key of the Certificate Service. */
export const apiKeyOption = (help = 'admin API key (prefer the environment variable)') =>
  new Option('--api-key <key>', help).env('POLLEN_API_KEY');

/** `--login SUPERLINK` / POLLEN_LOGIN: whose stored login to present to the Certificate Service. */
export const loginOption = () =>
  new Option(
    '--login <superlink>',
    'present your login to this SuperLink (pollen login SUPERLINK) instead of an API key',
  ).env('POLLEN_LOGIN');

/** `--ca-cert FILE` / POLLEN_CA_CERT: the root CA to trust for the Certificate Service. */
export const caCertOption = (
  help = 'root CA certificate to trust (default: CA_PATH/rootCA.pem or system roots)',
) => new Option('--ca-cert <file>', help).env('POLLEN_CA_CERT');

/** `-p, --policy FILE` / POLLEN_ENROLLMENT_POLICY. */
export const policyOption = (
  flags = '-p, --policy <file>',
  help = 'enrollment policy YAML (default: built-in)',
) => new Option(flags, help).env('POLLEN_ENROLLMENT_POLICY');

/** `--smtp-url URL` / POLLEN_SMTP_URL: the relay of the Certificate Service's e-mail notifications. */
export const smtpUrlOption = (help = 'SMTP relay for e-mail notifications, smtp://HOST:PORT') =>
  new Option('--smtp-url <url>', help).env('POLLEN_SMTP_URL');

/**
 * `--proxy-protocol-from IP[,IP…]` / POLLEN_PROXY_PROTOCOL_FROM: the TCP proxies in front (nginx
 * `stream` with `proxy_protocol on`) whose PROXY header names the client address.
 */
export const proxyProtocolOption = (what: string) =>
  new Option(
    '--proxy-protocol-from <addresses>',
    `comma-separated addresses of TCP proxies (nginx stream) in front of ${what}: their connections must start with a PROXY header, whose client address is believed; a PROXY header from anywhere else is refused`,
  ).env('POLLEN_PROXY_PROTOCOL_FROM');
/** The ops listener's default address of each component (docs/operations.md, the port map). */
export const METRICS_ADDRESSES = {
  superlink: '127.0.0.1:9095',
  supernode: '127.0.0.1:9096',
  certService: '127.0.0.1:9097',
} as const;

/** `--metrics-address HOST:PORT|off` / POLLEN_METRICS_ADDRESS: where /metrics, /healthz, /readyz listen. */
export const metricsAddressOption = (defaultAddress: string) =>
  new Option(
    '--metrics-address <host:port>',
    '/metrics, /healthz and /readyz (plain HTTP: keep it on loopback or a private network; `off` disables it)',
  )
    .env('POLLEN_METRICS_ADDRESS')
    .default(defaultAddress);

/** `--log-level LEVEL` / POLLEN_LOG_LEVEL. */
export const logLevelOption = () =>
  new Option('--log-level <level>', 'fatal, error, warn, info, debug')
    .env('POLLEN_LOG_LEVEL')
    .default('info');

/** `--log-format json|pretty` / POLLEN_LOG_FORMAT; absent: pretty on a terminal, json otherwise. */
export const logFormatOption = () =>
  new Option(
    '--log-format <format>',
    'json (one object a line) or pretty; default: pretty on a terminal, json otherwise',
  )
    .choices(['json', 'pretty'])
    .env('POLLEN_LOG_FORMAT');

/** Both logging options of a long-running command. */
export const addLogOptions = (cmd: Command): Command =>
  cmd.addOption(logLevelOption()).addOption(logFormatOption());

/**
 * `--ca-passphrase` / POLLEN_CA_PASSPHRASE, hidden: a passphrase does not belong on a command line
 * (other users see it in the process list); the option only carries the variable.
 */
export const caPassphraseOption = () =>
  new Option('--ca-passphrase <text>', 'the root key passphrase').env('POLLEN_CA_PASSPHRASE').hideHelp();

/**
 * Variables no flag stands for: read by the startup kits' scripts, by a SuperLink or SuperNode
 * when it starts app processes, and POLLEN_TOKEN (a secret has no flag: a command line is seen by
 * every user in the process list). With the flags' variables (environmentVariables) they are every
 * variable Pollen reads.
 */
export const SCRIPT_VARIABLES: Readonly<Record<string, string>> = {
  POLLEN_BIN:
    "where a kit's scripts and pollen.run (Python) find Pollen: bin/pollen.js (run by POLLEN_NODE) or a `pollen` executable",
  POLLEN_NODE: "the Node.js a kit's scripts and pollen.run run POLLEN_BIN with",
  POLLEN_FOREGROUND: '`1`: start.sh stays in the foreground (same as start.sh --foreground)',
  POLLEN_SKIP_ENV_CHECK:
    '`1`: start.sh of a kit with startup/requirements.txt starts without checking the Python environment',
  POLLEN_APP_ENV:
    'names of further variables a SuperNode or SuperLink passes to its app processes (comma-separated)',
  POLLEN_TOKEN:
    'a service-account secret (pollen_sa_…) the CLI presents on Control API calls, instead of a login or an admin certificate',
};

/** One variable of the CLI: the flags it stands for, as `COMMAND --flag`. */
export interface EnvironmentVariable {
  name: string;
  flags: string[];
  help: string;
}

/** Every variable an option of `program` reads (commander's `.env()`), sorted by name. */
export function environmentVariables(program: Command): EnvironmentVariable[] {
  const found = new Map<string, EnvironmentVariable>();
  const walk = (cmd: Command, path: string[]): void => {
    for (const o of cmd.options) {
      if (!o.envVar) continue;
      const v = found.get(o.envVar) ?? { name: o.envVar, flags: [], help: o.description };
      v.flags.push([...path, o.long ?? o.flags].join(' '));
      found.set(o.envVar, v);
    }
    for (const sub of cmd.commands) walk(sub, [...path, sub.name()]);
  };
  walk(program, []);
  return [...found.values()].sort((a, b) => a.name.localeCompare(b.name));
}
