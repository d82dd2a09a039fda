/**
 * Named federations in the user config file (`~/.pollen/config.toml`, or POLLEN_CONFIG), as
 * Flower's `[superlink.NAME]` entries: where a federation's Control API is and how to prove who
 * we are. An admin startup kit gives the certificate, key and root in one folder.
 *
 *   default-federation = "local"
 *
 *   [federations.local]
 *   address = "127.0.0.1:9093"
 *   kit = "/home/me/admin-kit"            # or the three files below
 *   # root-certificate = "rootCA.pem"
 *   # certificate = "admin.crt"
 *   # private-key = "admin.key"
 *   # insecure = true                     # development SuperLink without TLS
 *
 *   [federations.lab]                     # people who log in (`pollen login lab`) need only
 *   address = "superlink.example.org:9093"  # the root, pinned by its fingerprint
 *   root-certificate = "roots/lab.pem"
 *   # issuer = "https://id.example.org/realms/lab"   # the OpenID Provider, where the SuperLink
 *   # client-id = "pollen-cli"                      # does not announce one
 *   # audience = "https://superlink.example.org"
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

const federationSchema = z
  .object({
    address: z.string().min(3),
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

const configSchema = z
  .object({
    'default-federation': z.string().optional(),
    federations: z.record(z.string(), federationSchema).optional(),
  })
  .passthrough();

export type FederationEntry = z.infer<typeof federationSchema>;

export interface Federation {
  name: string;
  /** https://HOST:PORT (or http:// when insecure). */
  url: string;
  /** The root that must sign the SuperLink's certificate; ours (an admin certificate) where we have one. */
  tls?: { ca: string } & Partial<TlsMaterial>;
  /** The OpenID Provider named in the config (else the SuperLink announces its own). */
  issuer?: { issuer: string; clientId: string; audience?: string };
}

/** The federations file: the one given (`--config`, POLLEN_CONFIG), or ~/.pollen/config.toml. */
export function configPath(given?: string): string {
  return given || join(homedir(), '.pollen', 'config.toml');
}

export function readConfig(path = configPath()): z.infer<typeof configSchema> {
  if (!existsSync(path)) return {};
  let raw: unknown;
  try {
    raw = parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new PollenError(
      'CONFIG_INVALID',
      `${path} is not valid TOML: ${e instanceof Error ? e.message : e}`,
    );
  }
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new PollenError('CONFIG_INVALID', `${path}: ${issue?.path.join('.')}: ${issue?.message}`);
  }
  return parsed.data;
}

/** Resolve FEDERATION (or the default one, or the only one) to an address and credentials. */
export function loadFederation(name: string | undefined, path = configPath()): Federation {
  const config = readConfig(path);
  const all = config.federations ?? {};
  const names = Object.keys(all);
  const chosen = name ?? config['default-federation'] ?? (names.length === 1 ? names[0] : undefined);
  if (!chosen)
    throw new PollenError('FEDERATION_NOT_FOUND', `No federation given and no default in ${path}`, {
      hint: 'Add one: pollen federation add NAME --address HOST:9093 --kit ADMIN_KIT',
    });
  const entry = all[chosen];
  if (!entry) {
    const near = nearest(chosen, names);
    throw new PollenError('FEDERATION_NOT_FOUND', `No federation "${chosen}" in ${path}`, {
      hint: names.length
        ? `${near ? `Did you mean ${near}? ` : ''}Known: ${names.join(', ')} (pollen federation list); add one with pollen federation add ${chosen} --address HOST:9093 --kit ADMIN_KIT`
        : `Add it: pollen federation add ${chosen} --address HOST:9093 --kit ADMIN_KIT`,
      ...(near && { data: { suggestion: near } }),
    });
  }
  const base = dirname(path);
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  const issuer = entry.issuer
    ? { issuer: entry.issuer, clientId: entry['client-id'] ?? 'pollen-cli', audience: entry.audience }
    : undefined;
  if (entry.insecure) return { name: chosen, url: `http://${entry.address}`, issuer };
  let tls: Federation['tls'];
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
      `Federation "${chosen}" needs kit, or certificate + private-key + root-certificate, or (to log in) root-certificate alone`,
    );
  return { name: chosen, url: `https://${entry.address}`, tls, issuer };
}

/** Add or replace a federation entry (the file is rewritten; comments are not kept). */
export function saveFederation(
  name: string,
  entry: FederationEntry,
  makeDefault: boolean,
  path = configPath(),
): void {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(name))
    throw new PollenError('INVALID_ARGUMENT', 'A federation name uses letters, digits, _ and -');
  federationSchema.parse(entry);
  const config = readConfig(path);
  const federations = { ...(config.federations ?? {}), [name]: entry };
  const lines: string[] = ['# Pollen federations (pollen federation add/list)'];
  const def = makeDefault ? name : config['default-federation'];
  if (def) lines.push(`default-federation = ${JSON.stringify(def)}`);
  for (const [n, e] of Object.entries(federations)) {
    lines.push('', `[federations.${n}]`);
    for (const [k, v] of Object.entries(e)) if (v !== undefined) lines.push(`${k} = ${JSON.stringify(v)}`);
  }
  writeFileAtomic(path, `${lines.join('\n')}\n`, 0o600);
}
