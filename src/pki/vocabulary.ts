/**
 * The names of key and certificate types, apart from the code that makes them: the CLI lists them
 * in its options without loading the x509 library (keys.ts, profiles.ts).
 */

export const KEY_TYPES = ['ec-p256', 'ec-p384', 'rsa-3072'] as const;
export type KeyType = (typeof KEY_TYPES)[number];

export function isKeyType(v: string): v is KeyType {
  return (KEY_TYPES as readonly string[]).includes(v);
}

/** The four kinds of certificate a project issues (FLARE's participant types). */
export const CERT_TYPES = ['server', 'client', 'relay', 'admin'] as const;
export type CertType = (typeof CERT_TYPES)[number];

export function isCertType(v: string): v is CertType {
  return (CERT_TYPES as readonly string[]).includes(v);
}
