import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { PollenError } from '../../errors.js';
import { configPath, DEFAULT_FEDERATION, NAME_PATTERN, saveConnection } from '../connections.js';
import { bold, dim, type Output } from '../output.js';

export interface SuperLinkAddOptions {
  name: string;
  /** The SuperLink's Control API, HOST:PORT. */
  address: string;
  /** The federation on that SuperLink the entry targets (default: `default`). */
  federation?: string;
  kit?: string;
  rootCertificate?: string;
  certificate?: string;
  privateKey?: string;
  insecure?: boolean;
  /** The OpenID Provider to log in with, where the SuperLink does not announce one. */
  issuer?: string;
  clientId?: string;
  audience?: string;
  /** Make it the default connection. */
  default?: boolean;
  /** The config file (`--config`). */
  config?: string;
}

/** `pollen config superlink add`: add or replace a SuperLink connection in the config file. */
export async function superLinkAdd(o: SuperLinkAddOptions, out: Output): Promise<void> {
  const loginOnly = o.rootCertificate && !o.certificate && !o.privateKey;
  if (!o.insecure && !o.kit && !loginOnly && !(o.certificate && o.privateKey && o.rootCertificate))
    throw new PollenError(
      'USAGE',
      'Give --kit, or --certificate, --private-key and --root-certificate, or (to log in) --root-certificate alone',
    );
  // A path that does not exist now would only fail at the first command that uses it.
  for (const [flag, path] of [
    ['--kit', o.kit],
    ['--certificate', o.certificate],
    ['--private-key', o.privateKey],
    ['--root-certificate', o.rootCertificate],
  ] as const)
    if (path !== undefined && !existsSync(path))
      throw new PollenError('FILE_NOT_FOUND', `${flag} ${path}: no such file or folder`, {
        hint: `Give the ${flag === '--kit' ? 'admin kit folder' : 'file'} as it is on this machine (relative to ${process.cwd()}), then add the SuperLink again.`,
      });
  if (o.federation !== undefined && !NAME_PATTERN.test(o.federation))
    throw new PollenError(
      'INVALID_ARGUMENT',
      `--federation ${o.federation}: a federation name uses letters, digits, _ and -`,
    );
  // Paths are stored absolute: the config file need not sit next to them.
  const abs = (p: string | undefined) => (p === undefined ? undefined : resolve(p));
  saveConnection(
    o.name,
    {
      address: o.address,
      federation: o.federation,
      kit: abs(o.kit),
      'root-certificate': abs(o.rootCertificate),
      certificate: abs(o.certificate),
      'private-key': abs(o.privateKey),
      insecure: o.insecure,
      issuer: o.issuer,
      'client-id': o.clientId,
      audience: o.audience,
    },
    Boolean(o.default),
    configPath(o.config),
  );
  out.result(
    { name: o.name, federation: o.federation ?? DEFAULT_FEDERATION, path: configPath(o.config) },
    (d) => `saved SuperLink ${bold(d.name)} ${dim(`(federation ${d.federation})`)} in ${d.path}`,
  );
}
