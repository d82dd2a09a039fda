import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { PollenError } from '../../errors.js';
import { normaliseFingerprint } from '../../pki/fingerprint.js';
import { assertValidName } from '../../pki/names.js';
import type { EnrollmentConfig } from './builders/enrollment.js';
import type { KitConfig } from './builders/participant-config.js';
import { ADMIN_ROLES, configFileName, ENDPOINT_SCHEMES, KIT_PATHS, KIT_TYPES } from './vocabulary.js';

// Reading a kit back (pollen start, pollen package verify).

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
  /** Servers and relays: the DNS names and addresses the certificate names (from the token). */
  hosts: z.array(z.string()).optional(),
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
