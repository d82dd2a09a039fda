import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** A secret a test looks for in logs: what it is and a distinctive piece of its value. */
export interface Secret {
  what: string;
  value: string;
}

const JWT = /eyJ[\w-]{10,}\.[\w-]{10,}\.[\w-]{10,}/g;

function filesUnder(dir: string, skip: (path: string) => boolean): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (skip(path)) continue;
    const s = statSync(path);
    if (s.isDirectory()) out.push(...filesUnder(path, skip));
    else if (s.isFile() && s.size < 1 << 20) out.push(path);
  }
  return out;
}

/**
 * Every secret kept in the files of a workspace (not its logs): private keys (a piece of each
 * PEM body), JWTs (enrollment tokens, access and ID tokens), API keys, service-account secrets,
 * and the access and refresh tokens of stored logins.
 */
export function secretsIn(ws: string, isLog: (path: string) => boolean): Secret[] {
  const found = new Map<string, Secret>();
  const add = (what: string, value: unknown) => {
    if (typeof value === 'string' && value.length >= 16) found.set(value, { what, value });
  };
  for (const file of filesUnder(ws, isLog)) {
    const text = readFileSync(file, 'latin1');
    for (const m of text.matchAll(/-----BEGIN [A-Z ]*PRIVATE KEY-----\s*([A-Za-z0-9+/=\s]+?)-----END/g))
      add(`private key ${file}`, m[1]!.replace(/\s+/g, '').slice(8, 48));
    for (const m of text.matchAll(JWT)) add(`token in ${file}`, m[0]);
    for (const m of text.matchAll(/pollen_sa_[A-Za-z0-9_-]{20,}|pollen_[A-Za-z0-9_-]{40,}/g))
      add(`secret in ${file}`, m[0]);
    if (file.endsWith('.json') && text.includes('Token'))
      try {
        const doc = JSON.parse(text) as Record<string, unknown>;
        add(`access token in ${file}`, doc['accessToken']);
        add(`refresh token in ${file}`, doc['refreshToken']);
      } catch {} // not JSON after all
  }
  return [...found.values()];
}

/** The secrets that occur in `text`, by what they are. */
export const leaked = (text: string, secrets: readonly Secret[]): string[] =>
  secrets.filter((s) => text.includes(s.value)).map((s) => s.what);
