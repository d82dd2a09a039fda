/**
 * Startup kits (`pollen package`): the folder a participant runs from. Like NVIDIA FLARE's
 * `lighter/` provisioning, a kit is made by a list of builders, one per concern (folders,
 * participant config, scripts, enrollment settings, local defaults, readme, signed manifest);
 * each adds files to a plan, and the plan is written to disk at the end, atomically per file.
 *
 * A kit meant for distribution never holds a private key: the site makes its own at first start
 * (auto-enrollment) or copies the certificate and key it was given into startup/ (manual).
 */
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { join, posix, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { ExitCode, PollenError } from '../errors.js';
import { normaliseFingerprint } from '../pki/fingerprint.js';
import { assertValidName, isEmail, isHostname } from '../pki/profiles.js';
import { writeFileAtomic } from '../util/files.js';
import { VERSION } from '../version.js';
import { checkCertServiceUrl } from './cert-service-http.js';
import { decodeToken, type TokenClaims } from './token.js';

// ---------------------------------------------------------------------------------------------
// Vocabulary

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
} as const;

/** `startup/fed_client.json`, `fed_server.json`, `fed_relay.json` or `fed_admin.json`. */
export function configFileName(type: KitType): string {
  return `fed_${type}.json`;
}

/** The certificate and key a participant NAME keeps in startup/. */
export function certFileNames(name: string): { cert: string; key: string } {
  return { cert: `${name}.crt`, key: `${name}.key` };
}

// ---------------------------------------------------------------------------------------------
// Endpoints

export interface Endpoint {
  scheme: EndpointScheme;
  host: string;
  port: number;
  adminPort: number | null;
}

function parsePort(text: string, what: string): number {
  if (!/^[0-9]{1,5}$/.test(text))
    throw new PollenError('INVALID_ARGUMENT', `Invalid ${what} "${text}": use a number from 1 to 65535`);
  const port = Number(text);
  if (port < 1 || port > 65535)
    throw new PollenError('INVALID_ARGUMENT', `Invalid ${what} ${port}: use a number from 1 to 65535`);
  return port;
}

function checkHost(host: string): void {
  if (!host || !(isIP(host) || isHostname(host)))
    throw new PollenError('INVALID_ARGUMENT', `Invalid host "${host}" in the endpoint`, {
      hint: 'Use a DNS name or an IP address (IPv6 in brackets: grpcs://[::1]:9092).',
    });
}

/**
 * Parse `SCHEME://HOST:PORT[:ADMIN_PORT]` (IPv6 hosts in brackets). Servers and admins need the
 * admin port (the Control API): `grpcs://server.example.com:9092:9093`.
 */
export function parseEndpoint(text: string, type?: KitType): Endpoint {
  const usage = {
    hint: 'Give the endpoint as SCHEME://HOST:PORT[:ADMIN_PORT] with SCHEME grpc, grpcs, https or tcp, e.g. grpcs://server.example.com:9092:9093.',
  };
  const m =
    /^([a-z][a-z0-9+.-]*):\/\/(\[[0-9A-Fa-f:.]+\]|[^:/[\]\s]+)(?::([^:/\s]*))?(?::([^:/\s]*))?\/?$/.exec(
      text.trim(),
    );
  if (!m) throw new PollenError('INVALID_ARGUMENT', `Invalid endpoint "${text}"`, usage);
  const [, scheme = '', rawHost = '', portText, adminText] = m;
  if (!(ENDPOINT_SCHEMES as readonly string[]).includes(scheme))
    throw new PollenError(
      'INVALID_ARGUMENT',
      `Unsupported scheme "${scheme}" in the endpoint "${text}"`,
      usage,
    );
  const host = rawHost.startsWith('[') ? rawHost.slice(1, -1) : rawHost;
  if (rawHost.startsWith('[') && isIP(host) !== 6)
    throw new PollenError('INVALID_ARGUMENT', `Invalid IPv6 address "${rawHost}" in the endpoint`, usage);
  checkHost(host);
  if (portText === undefined)
    throw new PollenError('INVALID_ARGUMENT', `The endpoint "${text}" has no port`, usage);
  const port = parsePort(portText, 'port');
  const adminPort = adminText === undefined ? null : parsePort(adminText, 'admin port');
  if ((type === 'server' || type === 'admin') && adminPort === null)
    throw new PollenError(
      'INVALID_ARGUMENT',
      `A ${type} endpoint needs the admin port: SCHEME://HOST:PORT:ADMIN_PORT`,
      {
        hint: `For example ${scheme}://${rawHost}:${port}:${port === 65535 ? port - 1 : port + 1}.`,
      },
    );
  if (adminPort !== null && adminPort === port)
    throw new PollenError('INVALID_ARGUMENT', 'The admin port must differ from the port', usage);
  return { scheme: scheme as EndpointScheme, host, port, adminPort };
}

export function formatEndpoint(e: Endpoint): string {
  const host = isIP(e.host) === 6 ? `[${e.host}]` : e.host;
  return `${e.scheme}://${host}:${e.port}${e.adminPort === null ? '' : `:${e.adminPort}`}`;
}

// ---------------------------------------------------------------------------------------------
// The kit specification: everything the builders need, validated once

export interface PollenRuntime {
  /** The `node` executable that runs `bin`. */
  node: string;
  /** The Pollen CLI entry point (bin/pollen.js). */
  bin: string;
}

/** This installation: the running `node` and this package's bin/pollen.js. */
export function defaultRuntime(): PollenRuntime {
  return {
    node: process.execPath,
    bin: fileURLToPath(new URL('../../bin/pollen.js', import.meta.url)),
  };
}

export interface KitSpec {
  name: string;
  type: KitType;
  org: string;
  /** Admins only. */
  role: AdminRole | null;
  endpoint: Endpoint;
  /** Where a server or relay listens (relay: FLARE's --listening_host/port). */
  listening: { host: string; port: number } | null;
  /** Written as startup/enrollment.json when a Certificate Service is given. */
  enrollment: { certServiceUrl: string; rootCaFingerprint: string | null } | null;
  /** Written as startup/enrollment_token (0600) when given. */
  token: string | null;
  runtime: PollenRuntime;
  createdAt: Date;
}

export interface KitSpecInput {
  name: string;
  type?: string;
  endpoint: string;
  org?: string;
  role?: string;
  certServiceUrl?: string;
  token?: string;
  listeningHost?: string;
  listeningPort?: string | number;
  /** The project root CA fingerprint when a CA folder is at hand (must agree with the token). */
  caRootFingerprint?: string;
  runtime?: PollenRuntime;
  now?: Date;
}

const ORG_RE = /^[A-Za-z0-9][A-Za-z0-9 ._@&+-]{0,63}$/;

/**
 * Validate the inputs of `pollen package` and turn them into a KitSpec. With a token, its subject
 * and type must match the kit; the token's root CA fingerprint becomes the kit's pin. Returns
 * warnings (e.g. an expired token) rather than printing them.
 */
export function resolveKitSpec(input: KitSpecInput): { spec: KitSpec; warnings: string[] } {
  const warnings: string[] = [];
  const typeText = input.type ?? 'client';
  if (!isKitType(typeText))
    throw new PollenError('INVALID_ARGUMENT', `Unknown kit type "${typeText}"`, {
      hint: `Use -t with one of ${KIT_TYPES.join(', ')}.`,
    });
  const type = typeText;
  assertValidName(input.name);
  if (type === 'admin' && !isEmail(input.name))
    throw new PollenError(
      'INVALID_ARGUMENT',
      `An admin kit is named by an e-mail address (got "${input.name}")`,
    );
  const endpoint = parseEndpoint(input.endpoint, type);
  const org = input.org ?? 'org';
  if (!ORG_RE.test(org))
    throw new PollenError('INVALID_ARGUMENT', `Invalid organisation "${org}"`, {
      hint: 'Use up to 64 letters, digits, spaces and . _ @ & + -, starting with a letter or digit.',
    });

  let role: AdminRole | null = null;
  if (input.role !== undefined) {
    if (type !== 'admin')
      throw new PollenError('INVALID_ARGUMENT', `--role applies to admin kits only, not to ${type} kits`);
    if (!(ADMIN_ROLES as readonly string[]).includes(input.role))
      throw new PollenError('INVALID_ARGUMENT', `Unknown role "${input.role}"`, {
        hint: `Use one of ${ADMIN_ROLES.join(', ')}.`,
      });
    role = input.role as AdminRole;
  }

  let listening: KitSpec['listening'] = null;
  if (input.listeningHost !== undefined || input.listeningPort !== undefined) {
    if (type !== 'relay' && type !== 'server')
      throw new PollenError(
        'INVALID_ARGUMENT',
        `--listening-host/--listening-port apply to relay and server kits, not to ${type} kits`,
      );
  }
  if (type === 'relay' || type === 'server') {
    const host = input.listeningHost ?? (type === 'relay' ? 'localhost' : '0.0.0.0');
    checkHost(host);
    const port =
      input.listeningPort === undefined
        ? type === 'relay'
          ? 9092
          : endpoint.port
        : parsePort(String(input.listeningPort), 'listening port');
    listening = { host, port };
  }

  let rootCaFingerprint: string | null = null;
  if (input.caRootFingerprint !== undefined) {
    rootCaFingerprint = normaliseFingerprint(input.caRootFingerprint) ?? null;
    if (!rootCaFingerprint)
      throw new PollenError('INVALID_ARGUMENT', `Invalid root CA fingerprint "${input.caRootFingerprint}"`);
  }

  let token: string | null = null;
  if (input.token !== undefined) {
    token = input.token.trim();
    const claims = decodeToken(token);
    const expected = tokenSubjectType(type);
    if (claims.sub !== input.name || claims.pollen.subject_type !== expected)
      throw new PollenError(
        'TOKEN_SUBJECT_MISMATCH',
        `The token is for ${claims.pollen.subject_type} "${claims.sub}", but this kit is for ${expected} "${input.name}"`,
        {
          hint: `Use the token made for "${input.name}" (\`pollen token info -t TOKEN\` shows its subject), or make the kit with -n ${claims.sub} -t ${claims.pollen.subject_type === 'user' ? 'admin' : claims.pollen.subject_type}.`,
        },
      );
    const tokenRole = claims.pollen.roles[0];
    if (type === 'admin' && tokenRole !== undefined) {
      if (role !== null && role !== tokenRole)
        throw new PollenError('INVALID_ARGUMENT', `The token grants the role "${tokenRole}", not "${role}"`, {
          hint: 'Leave out --role: the role comes from the token.',
        });
      role = tokenRole as AdminRole;
    }
    const pin = normaliseFingerprint(claims.pollen.root_ca_fingerprint);
    if (!pin) throw new PollenError('TOKEN_INVALID', 'The token carries a malformed root CA fingerprint');
    if (rootCaFingerprint && rootCaFingerprint !== pin)
      throw new PollenError(
        'CA_FINGERPRINT_MISMATCH',
        `The token pins root CA ${pin}, but the CA folder's root is ${rootCaFingerprint}`,
        { hint: 'Use the CA folder of the project that issued the token (-c / POLLEN_CA_PATH).' },
      );
    rootCaFingerprint = pin;
    const now = (input.now ?? new Date()).getTime() / 1000;
    if (claims.exp < now)
      warnings.push(
        `the enrollment token expired on ${new Date(claims.exp * 1000).toISOString()}; ask for a new one`,
      );
  }
  if (type === 'admin' && role === null) role = 'lead';

  const enrollment =
    input.certServiceUrl === undefined
      ? null
      : { certServiceUrl: checkCertServiceUrl(input.certServiceUrl), rootCaFingerprint };
  if (token !== null && enrollment === null)
    warnings.push('no --cert-service given: set POLLEN_CERT_SERVICE_URL on the site before the first start');

  return {
    spec: {
      name: input.name,
      type,
      org,
      role,
      endpoint,
      listening,
      enrollment,
      token,
      runtime: input.runtime ?? defaultRuntime(),
      createdAt: input.now ?? new Date(),
    },
    warnings,
  };
}

// ---------------------------------------------------------------------------------------------
// Builders

export interface KitFile {
  /** Relative POSIX path inside the kit. */
  path: string;
  content: Buffer;
  mode: number;
  /** Secrets (the token) are written 0600 and never listed in the manifest. */
  secret?: boolean;
}

/** What the builders produce; written to disk by writeKit. */
export class KitPlan {
  readonly dirs = new Set<string>();
  private readonly byPath = new Map<string, KitFile>();
  readonly warnings: string[] = [];

  dir(path: string): void {
    this.dirs.add(path);
  }

  file(path: string, content: string | Buffer, mode = 0o644, opts: { secret?: boolean } = {}): void {
    const norm = posix.normalize(path);
    if (norm !== path || path.startsWith('/') || path.startsWith('..'))
      throw new PollenError('INTERNAL', `Kit builder produced a bad path: ${path}`);
    if (this.byPath.has(path)) throw new PollenError('INTERNAL', `Two kit builders write ${path}`);
    if (/\.key$/.test(path))
      throw new PollenError('INTERNAL', `A kit never contains a private key (${path})`);
    this.byPath.set(path, {
      path,
      content: typeof content === 'string' ? Buffer.from(content, 'utf8') : content,
      mode,
      ...(opts.secret && { secret: true }),
    });
    this.dirs.add(posix.dirname(path));
  }

  get files(): KitFile[] {
    return [...this.byPath.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  get(path: string): KitFile | undefined {
    return this.byPath.get(path);
  }
}

/** One concern of a startup kit (FLARE's lighter `Builder`). */
export interface KitBuilder {
  readonly name: string;
  build(spec: KitSpec, plan: KitPlan): void | Promise<void>;
}

const json = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;

/** Single-quote a value for bash. */
export function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

/** startup/, local/, transfer/. */
export const workspaceBuilder: KitBuilder = {
  name: 'workspace',
  build(_spec, plan) {
    plan.dir(KIT_PATHS.startup);
    plan.dir(KIT_PATHS.local);
    plan.dir(KIT_PATHS.transfer);
  },
};

/** The participant configuration (`startup/fed_<type>.json`) that `pollen start` reads. */
export interface KitConfig {
  format: 'pollen-kit/v1';
  pollenVersion: string;
  createdAt: string;
  name: string;
  org: string;
  type: KitType;
  role: AdminRole | null;
  endpoint: Endpoint;
  listening: { host: string; port: number } | null;
  /** Paths relative to startup/. */
  certificates: { cert: string; key: string; rootCa: string; chain: string };
  enrollment: {
    config: string;
    tokenFile: string;
    stateFile: string;
    keyType: 'ec-p256';
    tokenEnv: 'POLLEN_ENROLLMENT_TOKEN';
    certServiceEnv: 'POLLEN_CERT_SERVICE_URL';
  };
}

export const participantConfigBuilder: KitBuilder = {
  name: 'participant-config',
  build(spec, plan) {
    const files = certFileNames(spec.name);
    const config: KitConfig = {
      format: 'pollen-kit/v1',
      pollenVersion: VERSION,
      createdAt: spec.createdAt.toISOString(),
      name: spec.name,
      org: spec.org,
      type: spec.type,
      role: spec.role,
      endpoint: spec.endpoint,
      listening: spec.listening,
      certificates: { cert: files.cert, key: files.key, rootCa: 'rootCA.pem', chain: 'chain.pem' },
      enrollment: {
        config: 'enrollment.json',
        tokenFile: 'enrollment_token',
        stateFile: 'enrollment_state.json',
        keyType: 'ec-p256',
        tokenEnv: 'POLLEN_ENROLLMENT_TOKEN',
        certServiceEnv: 'POLLEN_CERT_SERVICE_URL',
      },
    };
    plan.file(`startup/${configFileName(spec.type)}`, json(config));
  },
};

/** startup/enrollment.json and startup/enrollment_token (0600). */
export interface EnrollmentConfig {
  certServiceUrl: string;
  rootCaFingerprint?: string;
  name: string;
  type: KitType;
}

export const enrollmentBuilder: KitBuilder = {
  name: 'enrollment',
  build(spec, plan) {
    if (spec.enrollment) {
      const cfg: EnrollmentConfig = {
        certServiceUrl: spec.enrollment.certServiceUrl,
        ...(spec.enrollment.rootCaFingerprint && { rootCaFingerprint: spec.enrollment.rootCaFingerprint }),
        name: spec.name,
        type: spec.type,
      };
      plan.file(KIT_PATHS.enrollmentConfig, json(cfg));
    }
    if (spec.token) plan.file(KIT_PATHS.token, `${spec.token}\n`, 0o600, { secret: true });
  },
};

const SCRIPT_HEADER =
  '#!/usr/bin/env bash\n# Generated by `pollen package`. Do not edit: `pollen package verify` checks this file.\n';

/** Shell code that resolves how to run Pollen: POLLEN_BIN (and POLLEN_NODE) or the recorded paths. */
function runtimeSnippet(rt: PollenRuntime): string {
  return `# How to run Pollen: POLLEN_BIN (a pollen.js run by POLLEN_NODE, or a \`pollen\` executable);
# by default the installation this kit was made with, else \`pollen\` on the PATH.
DEFAULT_POLLEN_NODE=${shellQuote(rt.node)}
DEFAULT_POLLEN_BIN=${shellQuote(rt.bin)}
if [ -z "\${POLLEN_BIN:-}" ]; then
  if [ -f "$DEFAULT_POLLEN_BIN" ]; then
    POLLEN_BIN="$DEFAULT_POLLEN_BIN"
  elif command -v pollen >/dev/null 2>&1; then
    POLLEN_BIN="$(command -v pollen)"
  else
    echo "pollen: cannot find Pollen: set POLLEN_BIN to bin/pollen.js or a pollen executable" >&2
    exit ${ExitCode.USAGE}
  fi
fi
case "$POLLEN_BIN" in
  *.js | *.mjs | *.cjs)
    if [ -z "\${POLLEN_NODE:-}" ]; then
      if [ -x "$DEFAULT_POLLEN_NODE" ]; then POLLEN_NODE="$DEFAULT_POLLEN_NODE"; else POLLEN_NODE=node; fi
    fi
    POLLEN=("$POLLEN_NODE" "$POLLEN_BIN")
    ;;
  *) POLLEN=("$POLLEN_BIN") ;;
esac
`;
}

/** start.sh (background), sub_start.sh (supervisor) and stop.sh. */
export const scriptBuilder: KitBuilder = {
  name: 'scripts',
  build(spec, plan) {
    const who = `${spec.type} "${spec.name}"`;
    const locate = `STARTUP_DIR="$(cd "$(dirname "\${BASH_SOURCE[0]}")" && pwd)"
KIT_DIR="$(dirname "$STARTUP_DIR")"
PID_FILE="$KIT_DIR/${KIT_PATHS.pid}"
`;
    plan.file(
      KIT_PATHS.startScript,
      `${SCRIPT_HEADER}# Start the Pollen ${who} in the background: sub_start.sh enrolls when needed, runs
# the participant and restarts it when it fails. Output goes to ${KIT_PATHS.log} in the kit folder.
# Use --foreground (or POLLEN_FOREGROUND=1) to stay in the foreground (containers, systemd).
# Stop with ./startup/stop.sh.
set -euo pipefail
${locate}LOG_FILE="$KIT_DIR/${KIT_PATHS.log}"
if [ "\${1:-}" = "--foreground" ]; then
  shift
  POLLEN_FOREGROUND=1
fi
if [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
  echo "${spec.name} is already running (pid $(cat "$PID_FILE")); stop it with $STARTUP_DIR/stop.sh"
  exit 0
fi
if [ "\${POLLEN_FOREGROUND:-}" = "1" ]; then
  exec "$STARTUP_DIR/sub_start.sh" "$@"
fi
nohup "$STARTUP_DIR/sub_start.sh" "$@" >>"$LOG_FILE" 2>&1 </dev/null &
echo "$!" >"$PID_FILE"
echo "Started ${spec.name} (pid $!). Log: $LOG_FILE. Stop: $STARTUP_DIR/stop.sh"
`,
      0o755,
    );

    const stopCodes = [ExitCode.USAGE, ExitCode.INVALID_INPUT, ExitCode.UNAUTHORIZED, ExitCode.REJECTED];
    plan.file(
      KIT_PATHS.subStartScript,
      `${SCRIPT_HEADER}# Supervise the Pollen ${who}: run \`pollen start\` on this kit and restart it with
# exponential backoff (1 s doubling to 60 s) when it exits with an error. It stops for good on
# exit 0, and on the codes that a restart cannot fix: ${ExitCode.USAGE} (usage), ${ExitCode.INVALID_INPUT} (invalid kit or input),
# ${ExitCode.UNAUTHORIZED} (unauthorised, e.g. a missing or invalid token) and ${ExitCode.REJECTED} (enrollment rejected). Extra arguments go to \`pollen start\`.
set -uo pipefail
${locate}${runtimeSnippet(spec.runtime)}
CHILD=""
stop() {
  if [ -n "$CHILD" ]; then
    kill -TERM "$CHILD" 2>/dev/null
    wait "$CHILD" 2>/dev/null
  fi
  exit 0
}
cleanup() {
  if [ -f "$PID_FILE" ] && [ "$(cat "$PID_FILE" 2>/dev/null)" = "$$" ]; then rm -f "$PID_FILE"; fi
}
trap stop TERM INT
trap cleanup EXIT

DELAY=1
MAX_DELAY=60
while true; do
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) sub_start: starting ${spec.name}"
  STARTED=$(date +%s)
  "\${POLLEN[@]}" start "$KIT_DIR" "$@" &
  CHILD=$!
  wait "$CHILD"
  CODE=$?
  CHILD=""
  case "$CODE" in
    0)
      echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) sub_start: ${spec.name} exited normally"
      exit 0
      ;;
    ${stopCodes.join(' | ')})
      echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) sub_start: ${spec.name} stopped with exit code $CODE (not restarting: fix the cause above, then run start.sh again)"
      exit "$CODE"
      ;;
  esac
  if [ $(($(date +%s) - STARTED)) -ge 300 ]; then DELAY=1; fi
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) sub_start: ${spec.name} exited with code $CODE; restarting in \${DELAY}s"
  sleep "$DELAY" &
  CHILD=$!
  wait "$CHILD"
  CHILD=""
  DELAY=$((DELAY * 2))
  if [ "$DELAY" -gt "$MAX_DELAY" ]; then DELAY=$MAX_DELAY; fi
done
`,
      0o755,
    );

    plan.file(
      KIT_PATHS.stopScript,
      `${SCRIPT_HEADER}# Stop the Pollen ${who} started by start.sh (the supervisor stops the participant first).
set -euo pipefail
${locate}if [ ! -f "$PID_FILE" ]; then
  echo "${spec.name} is not running (no $PID_FILE)"
  exit 0
fi
PID="$(cat "$PID_FILE")"
if ! kill -0 "$PID" 2>/dev/null; then
  echo "${spec.name} is not running (stale pid $PID)"
  rm -f "$PID_FILE"
  exit 0
fi
kill -TERM "$PID"
for _ in $(seq 1 50); do
  if ! kill -0 "$PID" 2>/dev/null; then
    rm -f "$PID_FILE"
    echo "Stopped ${spec.name}"
    exit 0
  fi
  sleep 0.2
done
echo "${spec.name} did not stop in 10 s; killing it"
kill -KILL "$PID" 2>/dev/null || true
rm -f "$PID_FILE"
`,
      0o755,
    );
  },
};

/** local/*.default: settings a site copies (without .default) and edits. */
export const localDefaultsBuilder: KitBuilder = {
  name: 'local-defaults',
  build(spec, plan) {
    const site = spec.type === 'client' || spec.type === 'server';
    plan.file(
      'local/log_config.json.default',
      json({
        _comment: 'Copy to log_config.json to change logging. Levels: trace, debug, info, warn, error.',
        level: 'info',
        format: 'json',
        file: `../${KIT_PATHS.log}`,
        redact: ['token', 'authorization', 'privateKey'],
      }),
    );
    if (spec.type !== 'admin')
      plan.file(
        'local/resources.json.default',
        json({
          _comment: 'Copy to resources.json to limit what this participant may use.',
          ...(spec.type === 'client'
            ? { maxConcurrentRuns: 1, cpus: 'all', gpus: [], memoryLimitMb: null, workDir: '../transfer' }
            : spec.type === 'server'
              ? { maxConcurrentRuns: 4, maxNodes: 1000, runRetentionDays: 30 }
              : { maxConnections: 1000 }),
        }),
      );
    if (site) {
      plan.file(
        'local/authorization.json.default',
        json({
          _comment:
            'Copy to authorization.json to decide who may do what on this site. Rights: any, none, o:site (same organisation), n:submitter (own runs).',
          format: 'pollen-authz/v1',
          permissions: {
            project_admin: 'any',
            org_admin: { submit_run: 'none', manage_run: 'o:site', view: 'o:site', operate: 'o:site' },
            lead: { submit_run: 'any', manage_run: 'n:submitter', view: 'any', operate: 'o:site' },
            member: { submit_run: 'none', manage_run: 'none', view: 'any', operate: 'none' },
          },
        }),
      );
      plan.file(
        'local/privacy.json.sample',
        json({
          _comment:
            'Copy to privacy.json to restrict what leaves this site. A run names a scope; results pass its filters.',
          scopes: [
            { name: 'public', properties: { train_dataset: '/data/public' }, resultFilters: [] },
            {
              name: 'private',
              properties: { train_dataset: '/data/private' },
              resultFilters: [
                { name: 'exclude-vars', args: { pattern: '.*bias.*' } },
                { name: 'gaussian-dp', args: { clipNorm: 1.0, noiseMultiplier: 0.8 } },
              ],
            },
          ],
          defaultScope: 'public',
        }),
      );
    }
  },
};

/** readme.txt: what to do next, for this kit type. */
export const readmeBuilder: KitBuilder = {
  name: 'readme',
  build(spec, plan) {
    const { cert, key } = certFileNames(spec.name);
    const auto = spec.enrollment !== null || spec.token !== null;
    const autoSection = [
      `${auto ? '1' : '2'}. Auto-enrollment (large deployments)${auto ? ' - this kit is set up for it' : ''}:`,
      '',
      ...(spec.token
        ? ['    The enrollment token is in startup/enrollment_token (mode 0600). Keep it secret.']
        : [
            '    Put the enrollment token the project admin sent you in place:',
            '        export POLLEN_ENROLLMENT_TOKEN="<token>"',
            '    or  (umask 077; echo "<token>" > startup/enrollment_token)',
          ]),
      ...(spec.enrollment
        ? [`    The Certificate Service is ${spec.enrollment.certServiceUrl} (startup/enrollment.json).`]
        : ['    export POLLEN_CERT_SERVICE_URL=https://<certificate service host>:8443']),
      '    Then run:',
      '        ./startup/start.sh',
      '    At first start Pollen makes a private key here (it never leaves this machine), sends a',
      '    certificate request with the token, waits for approval when the policy asks for it, and',
      `    saves startup/${cert}, startup/rootCA.pem and startup/chain.pem. Renewal is automatic.`,
      '',
    ];
    const manualSection = [
      `${auto ? '2' : '1'}. Manual (small deployments, no Certificate Service):`,
      '',
      '    Copy the files the project admin sent you over a secure channel into startup/:',
      `        cp rootCA.pem ${cert} ${key} startup/`,
      `        chmod 600 startup/${key}`,
      '    Then run:',
      '        ./startup/start.sh',
      '',
    ];
    const lines = [
      `Pollen startup kit for ${spec.type} "${spec.name}" (organisation ${spec.org}${spec.role ? `, role ${spec.role}` : ''})`,
      `Endpoint: ${formatEndpoint(spec.endpoint)}`,
      ...(spec.listening ? [`Listens on: ${spec.listening.host}:${spec.listening.port}`] : []),
      `Made by Pollen ${VERSION} on ${spec.createdAt.toISOString()}`,
      '',
      'If the project admin signed the kit (startup/manifest.sig), check it first:',
      '',
      `    pollen package verify . --root-fingerprint sha256:<fingerprint the project admin gave you>`,
      '',
      'Then get a certificate, in one of two ways.',
      '',
      ...(auto ? [...autoSection, ...manualSection] : [...manualSection, ...autoSection]),
      'Logs go to log.txt; stop with ./startup/stop.sh. In a container, run',
      './startup/start.sh --foreground. Pollen is found through POLLEN_BIN (default: the',
      'installation that made this kit, else `pollen` on the PATH).',
      '',
      'Site settings: copy local/*.default (or *.sample) to the name without the suffix and edit it.',
      ...(spec.type === 'admin'
        ? ['', 'As an admin you use the certificate with the Pollen CLI and the dashboard.']
        : []),
      ...(spec.type === 'server'
        ? [
            '',
            `Open ports ${spec.endpoint.port} (Fleet API) and ${spec.endpoint.adminPort} (Control API) to the sites and admins.`,
          ]
        : []),
      '',
    ];
    plan.file(KIT_PATHS.readme, lines.join('\n'));
  },
};

/** The builders of an unsigned kit, in order; `signingBuilder` (kit-manifest.ts) comes last. */
export const DEFAULT_BUILDERS: readonly KitBuilder[] = [
  workspaceBuilder,
  participantConfigBuilder,
  scriptBuilder,
  enrollmentBuilder,
  localDefaultsBuilder,
  readmeBuilder,
];

export async function planKit(
  spec: KitSpec,
  builders: readonly KitBuilder[] = DEFAULT_BUILDERS,
): Promise<KitPlan> {
  const plan = new KitPlan();
  for (const b of builders) await b.build(spec, plan);
  return plan;
}

// ---------------------------------------------------------------------------------------------
// Writing

/** Every `*.key` file under dir (symlinks are not followed). */
export function findPrivateKeys(dir: string, rel = ''): string[] {
  const out: string[] = [];
  let entries: import('node:fs').Dirent[];
  try {
    entries = readdirSync(join(dir, rel), { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...findPrivateKeys(dir, p));
    else if (/\.key(\.next)?$/.test(e.name)) out.push(p);
  }
  return out;
}

export interface WriteKitOptions {
  /** Write into an existing kit folder (generated files are replaced, others left alone). */
  force?: boolean;
}

/** Files of a previous kit in the folder that this plan no longer produces (from its manifest). */
function staleFiles(dir: string, plan: KitPlan): string[] {
  try {
    const old = JSON.parse(readFileSync(join(dir, 'startup/manifest.json'), 'utf8')) as {
      files?: Array<{ path?: unknown }>;
    };
    const keep = new Set(plan.files.map((f) => f.path));
    return (old.files ?? [])
      .map((f) => f.path)
      .filter(
        (p): p is string =>
          typeof p === 'string' &&
          !keep.has(p) &&
          p === posix.normalize(p) &&
          !p.startsWith('..') &&
          !p.startsWith('/'),
      );
  } catch {
    return [];
  }
}

/**
 * Write a planned kit into `dir`. Refuses an existing non-empty folder unless `force`, and always
 * refuses a folder holding private keys (a distributable kit must never contain one).
 */
export function writeKit(dirIn: string, plan: KitPlan, opts: WriteKitOptions = {}): string {
  const dir = resolve(dirIn);
  if (existsSync(dir)) {
    const st = lstatSync(dir);
    if (!st.isDirectory())
      throw new PollenError('FILE_EXISTS', `${dir} exists and is not a folder`, { data: { path: dir } });
    const keys = findPrivateKeys(dir);
    if (keys.length > 0)
      throw new PollenError(
        'FILE_EXISTS',
        `Refusing to write a kit into ${dir}: it holds private keys (${keys.join(', ')})`,
        {
          hint: 'A kit for distribution never contains a private key; choose an empty folder.',
          data: { path: dir, keys },
        },
      );
    if (readdirSync(dir).length > 0 && !opts.force)
      throw new PollenError('FILE_EXISTS', `${dir} already exists`, {
        hint: 'Choose another folder (-o / -w), or pass --force to replace the generated files.',
        data: { path: dir },
      });
  }
  for (const p of staleFiles(dir, plan)) rmSync(join(dir, p), { force: true });
  for (const d of [...plan.dirs].sort()) mkdirSync(join(dir, d), { recursive: true, mode: 0o755 });
  for (const f of plan.files) writeFileAtomic(join(dir, f.path), f.content, f.mode);
  return dir;
}

// ---------------------------------------------------------------------------------------------
// Reading a kit back (pollen start, pollen package verify)

const endpointSchema = z.object({
  scheme: z.enum(ENDPOINT_SCHEMES),
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535),
  adminPort: z.number().int().min(1).max(65535).nullable(),
});

const configSchema = z.object({
  format: z.literal('pollen-kit/v1'),
  pollenVersion: z.string(),
  createdAt: z.string(),
  name: z.string(),
  org: z.string(),
  type: z.enum(KIT_TYPES),
  role: z.enum(ADMIN_ROLES).nullable(),
  endpoint: endpointSchema,
  listening: z.object({ host: z.string(), port: z.number().int() }).nullable(),
  certificates: z.object({ cert: z.string(), key: z.string(), rootCa: z.string(), chain: z.string() }),
  enrollment: z.object({
    config: z.string(),
    tokenFile: z.string(),
    stateFile: z.string(),
    keyType: z.literal('ec-p256'),
    tokenEnv: z.literal('POLLEN_ENROLLMENT_TOKEN'),
    certServiceEnv: z.literal('POLLEN_CERT_SERVICE_URL'),
  }),
});

const enrollmentConfigSchema = z.object({
  certServiceUrl: z.string(),
  rootCaFingerprint: z.string().optional(),
  name: z.string(),
  type: z.enum(KIT_TYPES),
});

/** A kit read from disk, with absolute paths of everything `pollen start` touches. */
export interface LoadedKit {
  dir: string;
  startupDir: string;
  config: KitConfig;
  configPath: string;
  /** startup/enrollment.json, when present. */
  enrollment: EnrollmentConfig | null;
  paths: {
    cert: string;
    key: string;
    rootCa: string;
    chain: string;
    token: string;
    state: string;
    enrollmentConfig: string;
  };
}

/** A file name from the config must stay inside startup/. */
function startupFile(startupDir: string, name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._@+-]*$/.test(name) || name.includes('..'))
    throw new PollenError('KIT_INVALID', `The kit config names an unsafe file "${name}"`);
  return join(startupDir, name);
}

export function loadKit(dirIn: string): LoadedKit {
  const dir = resolve(dirIn);
  const startupDir = join(dir, KIT_PATHS.startup);
  if (!existsSync(startupDir) || !statSync(startupDir).isDirectory())
    throw new PollenError('KIT_INVALID', `${dir} is not a startup kit (no startup/ folder)`, {
      data: { path: dir },
    });
  const found = KIT_TYPES.map((t) => join(startupDir, configFileName(t))).filter((p) => existsSync(p));
  if (found.length !== 1)
    throw new PollenError(
      'KIT_INVALID',
      found.length === 0
        ? `${startupDir} holds no fed_client.json, fed_server.json, fed_relay.json or fed_admin.json`
        : `${startupDir} holds more than one participant config`,
      { data: { path: dir } },
    );
  const configPath = found[0]!;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(configPath, 'utf8'));
  } catch (e) {
    throw new PollenError('KIT_INVALID', `${configPath} is not valid JSON`, { cause: e });
  }
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success)
    throw new PollenError('KIT_INVALID', `${configPath} is not a Pollen kit config`, {
      detail: parsed.error.message,
    });
  const config = parsed.data as KitConfig;
  assertValidName(config.name);
  if (configPath !== join(startupDir, configFileName(config.type)))
    throw new PollenError('KIT_INVALID', `${configPath} describes a ${config.type}, not what its name says`);
  const c = config.certificates;
  const e = config.enrollment;
  const paths = {
    cert: startupFile(startupDir, c.cert),
    key: startupFile(startupDir, c.key),
    rootCa: startupFile(startupDir, c.rootCa),
    chain: startupFile(startupDir, c.chain),
    token: startupFile(startupDir, e.tokenFile),
    state: startupFile(startupDir, e.stateFile),
    enrollmentConfig: startupFile(startupDir, e.config),
  };
  let enrollment: EnrollmentConfig | null = null;
  if (existsSync(paths.enrollmentConfig)) {
    let ej: unknown;
    try {
      ej = JSON.parse(readFileSync(paths.enrollmentConfig, 'utf8'));
    } catch (err) {
      throw new PollenError('KIT_INVALID', `${paths.enrollmentConfig} is not valid JSON`, { cause: err });
    }
    const ep = enrollmentConfigSchema.safeParse(ej);
    if (!ep.success)
      throw new PollenError('KIT_INVALID', `${paths.enrollmentConfig} is not a Pollen enrollment config`, {
        detail: ep.error.message,
      });
    if (ep.data.name !== config.name || ep.data.type !== config.type)
      throw new PollenError(
        'KIT_INVALID',
        `${paths.enrollmentConfig} is for another participant (${ep.data.type} "${ep.data.name}")`,
      );
    if (ep.data.rootCaFingerprint !== undefined && !normaliseFingerprint(ep.data.rootCaFingerprint))
      throw new PollenError('KIT_INVALID', `${paths.enrollmentConfig} holds a malformed rootCaFingerprint`);
    enrollment = ep.data as EnrollmentConfig;
  }
  return { dir, startupDir, config, configPath, enrollment, paths };
}

/** The kit folder for `-o DIR` / `-w WORKSPACE` (default `./NAME`). */
export function kitFolder(name: string, opts: { output?: string; workspace?: string; cwd?: string }): string {
  if (opts.output !== undefined && opts.workspace !== undefined)
    throw new PollenError('USAGE', 'Give either -o/--output or -w/--workspace, not both');
  const cwd = opts.cwd ?? process.cwd();
  if (opts.output !== undefined) return resolve(cwd, opts.output);
  if (opts.workspace !== undefined) return resolve(cwd, opts.workspace, name);
  return resolve(cwd, name);
}
