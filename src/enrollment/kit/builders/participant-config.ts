import { VERSION } from '../../../version.js';
import type { Endpoint } from '../endpoint.js';
import { json, type KitBuilder } from '../plan.js';
import { type AdminRole, certFileNames, configFileName, type KitType } from '../vocabulary.js';

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
  /** Servers and relays: the DNS names and IP addresses their certificate names. */
  hosts?: string[];
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
      ...(spec.hosts.length > 0 && { hosts: spec.hosts }),
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
