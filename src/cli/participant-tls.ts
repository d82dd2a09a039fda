/**
 * Where a SuperLink or SuperNode finds its TLS identity: an enrolled startup kit (`--kit`), or
 * explicit PEM files, or nothing with `--insecure` (development only, said loudly).
 */
import { existsSync } from 'node:fs';
import { type KitType, type LoadedKit, loadKit } from '../enrollment/kit.js';
import { PollenError } from '../errors.js';
import { loadTlsMaterial, type TlsMaterial, type TlsPaths } from '../transport/tls.js';
import type { Output } from './output.js';

export interface TlsFlags {
  kit?: string;
  cert?: string;
  key?: string;
  rootCa?: string;
  chain?: string;
  insecure?: boolean;
}

export interface ParticipantTls {
  tls?: TlsMaterial;
  kit?: LoadedKit;
  /** The files `tls` was read from, and how to read them again (a certificate rotation). */
  source?: { files: string[]; read(): TlsMaterial };
}

function fromFiles(paths: TlsPaths): Pick<ParticipantTls, 'tls' | 'source'> {
  const read = () => loadTlsMaterial(paths);
  const files = [paths.cert, paths.key, paths.ca, ...(paths.chain ? [paths.chain] : [])];
  return { tls: read(), source: { files, read } };
}

export function resolveTls(o: TlsFlags, type: KitType, out: Output): ParticipantTls {
  if (o.insecure) {
    if (o.kit || o.cert) throw new PollenError('USAGE', '--insecure cannot be combined with --kit or --cert');
    out.warn('INSECURE MODE: no TLS, no authentication. Use it only on a development machine.');
    return {};
  }
  if (o.kit) {
    const kit = loadKit(o.kit);
    if (kit.config.type !== type)
      throw new PollenError(
        'USAGE',
        `${o.kit} is a ${kit.config.type} kit; this command needs a ${type} kit`,
      );
    if (!existsSync(kit.paths.cert))
      throw new PollenError('FILE_NOT_FOUND', `The kit ${o.kit} holds no certificate yet`, {
        hint: `Enroll it first: pollen start ${o.kit} --enroll-only`,
      });
    return {
      kit,
      // Hand-issued certificates (manual workflow) already carry the intermediate; no chain.pem.
      ...fromFiles({
        cert: kit.paths.cert,
        key: kit.paths.key,
        ca: kit.paths.rootCa,
        chain: existsSync(kit.paths.chain) ? kit.paths.chain : undefined,
      }),
    };
  }
  if (o.cert || o.key || o.rootCa) {
    if (!o.cert || !o.key || !o.rootCa)
      throw new PollenError('USAGE', 'Give --cert, --key and --root-ca together (and --chain if separate)');
    return fromFiles({ cert: o.cert, key: o.key, ca: o.rootCa, chain: o.chain });
  }
  throw new PollenError('USAGE', 'Give a startup kit (--kit DIR) or --cert/--key/--root-ca', {
    hint: 'For a local experiment without security, --insecure.',
  });
}

/** HOST:PORT (IPv6 in brackets) → { host, port }. */
export function parseAddress(text: string, flag: string): { host: string; port: number } {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]\s]+):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || port > 65535)
    throw new PollenError('INVALID_ARGUMENT', `${flag} takes HOST:PORT (got "${text}")`);
  const host = m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : m[1]!;
  return { host, port };
}
