/**
 * The SuperLink connections in the user config file (`~/.pollen/config.toml`, or POLLEN_CONFIG),
 * as Flower's `[superlink.NAME]` entries: where a SuperLink's Control API is, how to prove who we
 * are, and which of its federations the entry targets. An admin startup kit gives the
 * certificate, key and root in one folder.
 *
 *   default-superlink = "local"
 *
 *   [superlinks.local]
 *   address = "127.0.0.1:9093"
 *   kit = "/home/me/admin-kit"            # or the three files below
 *   # root-certificate = "rootCA.pem"
 *   # certificate = "admin.crt"
 *   # private-key = "admin.key"
 *   # insecure = true                     # development SuperLink without TLS
 *   # federation = "default"              # the federation on that SuperLink (default: default)
 *
 *   [superlinks.lab]                      # people who log in (`pollen login lab`) need only
 *   address = "superlink.example.org:9093"  # the root, pinned by its fingerprint
 *   root-certificate = "roots/lab.pem"
 *   federation = "cancer-study"
 *   # issuer = "https://id.example.org/realms/lab"   # the OpenID Provider, where the SuperLink
 *   # client-id = "pollen-cli"                      # does not announce one
 *   # audience = "https://superlink.example.org"
 *
 * Files written before connections had their own command name them `[federations.NAME]` and
 * `default-federation`: they are read the same, and rewritten in today's form on the next save.
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parse } from 'smol-toml';
import { z } from 'zod';
import { loadKit } from '../enrollment/kit/load.js';
import { PollenError } from '../errors.js';
import { loadTlsMaterial, readPem, type TlsMaterial } from '../transport/tls.js';
import { writeFileAtomic } from '../util/files.js';
import { nearest } from '../util/text.js';
import { NAME_PATTERN } from './connection-name.js';

export { NAME_PATTERN };

/** The federation every SuperLink serves, which an entry targets unless it names another. */
export const DEFAULT_FEDERATION = 'default';

const entrySchema = z
  .object({
    address: z.string().min(3),
    federation: z.string().regex(NAME_PATTERN).optional(),
    kit: z.string().optional(),
    'root-certificate': z.string().optional(),
    certificate: z.string().optional(),
    'private-key': z.string().optional(),
    chain: z.string().optional(),
    insecure: z.boolean().optional(),
    issuer: z.string().url().optional(),
    'client-id': z.string().min(1).optional(),
    audience: z.string().min(1).optional(),
  })
  .strict();

const fileSchema = z
  .object({
    'default-superlink': z.string().optional(),
    superlinks: z.record(z.string(), entrySchema).optional(),
    // The same entries under their earlier names.
    'default-federation': z.string().optional(),
    federations: z.record(z.string(), entrySchema).optional(),
  })
  .passthrough();

export type ConnectionEntry = z.infer<typeof entrySchema>;

/** The connection entries of a config file, earlier spellings folded in. */
export interface ConnectionsFile {
  path: string;
  default?: string;
  entries: Record<string, ConnectionEntry>;
}

export interface Connection {
  /** The entry's name in the config file. */
  name: string;
  /** The federation on that SuperLink the entry targets. */
  federation: string;
  /** HOST:PORT of the Control API, as configured. */
  address: string;
  /** https://HOST:PORT (or http:// when insecure). */
  url: string;
  /** The root that must sign the SuperLink's certificate; ours (an admin certificate) where we have one. */
  tls?: { ca: string } & Partial<TlsMaterial>;
  /** The OpenID Provider named in the config (else the SuperLink announces its own). */
  issuer?: { issuer: string; clientId: string; audience?: string };
}

/** The config file: the one given (`--config`, POLLEN_CONFIG), or ~/.pollen/config.toml. */
export function configPath(given?: string): string {
  return given || join(homedir(), '.pollen', 'config.toml');
}

export function readConnections(path = configPath()): ConnectionsFile {
  if (!existsSync(path)) return { path, entries: {} };
  let raw: unknown;
  try {
    raw = parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new PollenError(
      'CONFIG_INVALID',
      `${path} is not valid TOML: ${e instanceof Error ? e.message : e}`,
    );
  }
  const parsed = fileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new PollenError('CONFIG_INVALID', `${path}: ${issue?.path.join('.')}: ${issue?.message}`);
  }
  const f = parsed.data;
  return {
    path,
    default: f['default-superlink'] ?? f['default-federation'],
    entries: { ...f.federations, ...f.superlinks },
  };
}

/** The connection a command uses when it names none: the default one, or the only one. */
export function defaultConnection(file: ConnectionsFile): string | undefined {
  const names = Object.keys(file.entries);
  return file.default ?? (names.length === 1 ? names[0] : undefined);
}

/** Entry `name` of the file, as an address and credentials. */
export function connectionOf(file: ConnectionsFile, name: string): Connection {
  const entry = file.entries[name];
  if (!entry) throw new PollenError('SUPERLINK_NOT_FOUND', `No SuperLink "${name}" in ${file.path}`);
  const base = dirname(file.path);
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  const issuer = entry.issuer
    ? { issuer: entry.issuer, clientId: entry['client-id'] ?? 'pollen-cli', audience: entry.audience }
    : undefined;
  const common = { name, federation: entry.federation ?? DEFAULT_FEDERATION, address: entry.address, issuer };
  if (entry.insecure) return { ...common, url: `http://${entry.address}` };
  let tls: Connection['tls'];
  if (entry.kit) {
    const kit = loadKit(abs(entry.kit));
    tls = loadTlsMaterial({
      cert: kit.paths.cert,
      key: kit.paths.key,
      ca: kit.paths.rootCa,
      chain: kit.paths.chain,
    });
  } else if (entry.certificate && entry['private-key'] && entry['root-certificate']) {
    tls = loadTlsMaterial({
      cert: abs(entry.certificate),
      key: abs(entry['private-key']),
      ca: abs(entry['root-certificate']),
      chain: entry.chain ? abs(entry.chain) : undefined,
    });
  } else if (entry['root-certificate'] && !entry.certificate && !entry['private-key']) {
    // A person who logs in: the root to check the SuperLink by, and no certificate of their own.
    tls = { ca: readPem(abs(entry['root-certificate']), 'root CA certificate') };
  } else
    throw new PollenError(
      'CONFIG_INVALID',
      `SuperLink "${name}" needs kit, or certificate + private-key + root-certificate, or (to log in) root-certificate alone`,
    );
  return { ...common, url: `https://${entry.address}`, tls };
}

/** Rewrite the file with `entries` and `def` as the default (comments are not kept). */
function writeConnections(path: string, entries: Record<string, ConnectionEntry>, def: string | undefined) {
  const lines: string[] = ['# Pollen SuperLink connections (pollen config superlink add|list|use)'];
  if (def) lines.push(`default-superlink = ${JSON.stringify(def)}`);
  for (const [n, e] of Object.entries(entries)) {
    lines.push('', `[superlinks.${n}]`);
    for (const [k, v] of Object.entries(e)) if (v !== undefined) lines.push(`${k} = ${JSON.stringify(v)}`);
  }
  writeFileAtomic(path, `${lines.join('\n')}\n`, 0o600);
}

/**
 * Add or replace a connection entry. The default stays what it was, also where it was so only
 * by being the one entry; the first entry saved becomes it.
 */
export function saveConnection(
  name: string,
  entry: ConnectionEntry,
  makeDefault: boolean,
  path = configPath(),
): void {
  if (!NAME_PATTERN.test(name))
    throw new PollenError('INVALID_ARGUMENT', 'A SuperLink connection name uses letters, digits, _ and -');
  entrySchema.parse(entry);
  const file = readConnections(path);
  const def = makeDefault ? name : (defaultConnection(file) ?? name);
  writeConnections(path, { ...file.entries, [name]: entry }, def);
}

/** Make entry `name` the one commands use when they name none. */
export function useConnection(name: string, path = configPath()): void {
  const file = readConnections(path);
  if (!file.entries[name]) throw notFound(file, name);
  writeConnections(path, file.entries, name);
}

/** SUPERLINK_NOT_FOUND for `name`, with the known entries and a near one in the hint. */
export function notFound(file: ConnectionsFile, name: string | undefined): PollenError {
  const names = Object.keys(file.entries);
  if (name === undefined)
    return new PollenError(
      'SUPERLINK_NOT_FOUND',
      names.length
        ? `No default SuperLink in ${file.path} (${names.length} configured)`
        : `No SuperLink configured in ${file.path}`,
      {
        hint: names.length
          ? `Choose one: pollen config superlink use NAME (known: ${names.join(', ')}), or give --superlink NAME`
          : 'Add one: pollen config superlink add NAME --address HOST:9093 --kit ADMIN_KIT',
      },
    );
  const near = nearest(name, names);
  return new PollenError('SUPERLINK_NOT_FOUND', `No SuperLink "${name}" in ${file.path}`, {
    hint: names.length
      ? `${near ? `Did you mean ${near}? ` : ''}Known: ${names.join(', ')} (pollen config superlink list); add one with pollen config superlink add ${name} --address HOST:9093 --kit ADMIN_KIT`
      : `Add it: pollen config superlink add ${name} --address HOST:9093 --kit ADMIN_KIT`,
    ...(near && { data: { suggestion: near } }),
  });
}
