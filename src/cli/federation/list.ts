import { configPath, readConfig } from '../federations.js';
import type { Output } from '../output.js';

export interface FederationListOptions {
  /** The federations file (`--config`). */
  config?: string;
}

/** `pollen federation list`: the federations in the federations file, the default marked. */
export async function federationList(o: FederationListOptions, out: Output): Promise<void> {
  const config = readConfig(configPath(o.config));
  const feds = Object.entries(config.federations ?? {}).map(([name, f]) => ({
    name,
    address: f.address,
    default: config['default-federation'] === name,
    insecure: Boolean(f.insecure),
  }));
  out.result({ path: configPath(o.config), federations: feds }, (d) =>
    d.federations.length === 0
      ? `no federations in ${d.path}: pollen federation add NAME --address HOST:9093 --kit ADMIN_KIT`
      : d.federations.map(
          (f) =>
            `${f.default ? '*' : ' '} ${f.name.padEnd(16)} ${f.address}${f.insecure ? ' (insecure)' : ''}`,
        ),
  );
}
