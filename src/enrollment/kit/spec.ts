import { PollenError } from '../../errors.js';
import { normaliseFingerprint } from '../../pki/fingerprint.js';
import { assertValidName, isEmail, normalizeHosts } from '../../pki/names.js';
import { packageFile } from '../../util/package-root.js';
import { checkCertServiceUrl } from '../cert-service-http.js';
import { decodeToken } from '../token.js';
import { checkHost, type Endpoint, parseEndpoint, parsePort } from './endpoint.js';
import {
  ADMIN_ROLES,
  type AdminRole,
  isKitType,
  KIT_TYPES,
  type KitType,
  tokenSubjectType,
} from './vocabulary.js';

// The kit specification: everything the builders need, validated once.

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
    bin: packageFile('bin', 'pollen.js'),
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
  /** Servers and relays: the DNS names and IP addresses its certificate names (the token's hosts). */
  hosts: string[];
  /** Written as startup/enrollment.json when a Certificate Service is given. */
  enrollment: { certServiceUrl: string; rootCaFingerprint: string | null } | null;
  /** Written as startup/enrollment_token (0600) when given. */
  token: string | null;
  /** Client and server kits: the Python requirements start.sh checks before it starts. */
  requirements: string[] | null;
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
  /** Servers and relays: names it is reached at; the token must carry each (`--host`). */
  hosts?: string[];
  /** The project root CA fingerprint when a CA folder is at hand (must agree with the token). */
  caRootFingerprint?: string;
  /** The lines of a requirements file (`--requirements`), for client and server kits. */
  requirements?: string[];
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
  const hosts = kitHosts(
    type,
    input.hosts ?? [],
    token === null ? null : (decodeToken(token).pollen.hosts ?? []),
  );
  if (hosts.length > 0 && token === null)
    warnings.push(
      `the certificate names ${hosts.join(', ')} only if the enrollment token does: make it with pollen token generate --${type} --host …`,
    );

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
      hosts,
      enrollment,
      token,
      requirements: kitRequirements(type, input.requirements),
      runtime: input.runtime ?? defaultRuntime(),
      createdAt: input.now ?? new Date(),
    },
    warnings,
  };
}

/**
 * The hosts of a server or relay kit: `--host` names, each of which the kit's token must carry
 * (its certificate will name only the token's hosts), or else the token's own.
 */
function kitHosts(type: KitType, given: string[], tokenHosts: string[] | null): string[] {
  if (given.length > 0 && type !== 'server' && type !== 'relay')
    throw new PollenError('INVALID_ARGUMENT', `--host applies to server and relay kits, not to ${type} kits`);
  const hosts = normalizeHosts(given);
  if (tokenHosts === null) return hosts;
  const missing = hosts.filter((h) => !tokenHosts.includes(h));
  if (missing.length > 0)
    throw new PollenError(
      'INVALID_ARGUMENT',
      `The token does not name ${missing.join(', ')}: the certificate would name only ${tokenHosts.join(', ') || 'the kit name'}`,
      {
        hint: `Make the token with every host: pollen token generate -s NAME --${type} ${[...new Set([...tokenHosts, ...hosts])].map((h) => `--host ${h}`).join(' ')}`,
      },
    );
  return hosts.length > 0 ? hosts : tokenHosts;
}

/** Python requirements belong to the participants that run apps: SuperNodes and the SuperLink. */
function kitRequirements(type: KitType, requirements: string[] | undefined): string[] | null {
  if (requirements === undefined) return null;
  if (type !== 'client' && type !== 'server')
    throw new PollenError(
      'INVALID_ARGUMENT',
      `--requirements applies to client and server kits, not to ${type} kits`,
      {
        hint: 'Give the requirements file to the kits of the sites (client) or the SuperLink (server).',
      },
    );
  return requirements;
}
