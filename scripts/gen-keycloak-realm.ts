/**
 * Writes deploy/keycloak/realm.json and deploy/keycloak/identity.toml for the sample project
 * (src/deploy/keycloak-realm.ts); test/keycloak-realm.test.ts checks they are up to date.
 *
 *   npx tsx scripts/gen-keycloak-realm.ts
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { keycloakIdentityToml, keycloakRealm, SAMPLE_REALM } from '../src/deploy/keycloak-realm.js';

export const REALM_DIR = resolve(import.meta.dirname, '..', 'deploy', 'keycloak');

export function realmFiles(): Record<string, string> {
  return {
    'realm.json': `${JSON.stringify(keycloakRealm(SAMPLE_REALM), null, 2)}\n`,
    'identity.toml': keycloakIdentityToml(SAMPLE_REALM),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  mkdirSync(REALM_DIR, { recursive: true });
  for (const [name, text] of Object.entries(realmFiles())) writeFileSync(resolve(REALM_DIR, name), text);
  console.log(`wrote ${Object.keys(realmFiles()).join(', ')} in ${REALM_DIR}`);
}
