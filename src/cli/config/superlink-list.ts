import { configPath, DEFAULT_FEDERATION, defaultConnection, readConnections } from '../connections.js';
import type { Output } from '../output.js';

export interface SuperLinkListOptions {
  /** The config file (`--config`). */
  config?: string;
}

/** `pollen config superlink list`: the SuperLink connections in the config file, the default marked. */
export async function superLinkList(o: SuperLinkListOptions, out: Output): Promise<void> {
  const file = readConnections(configPath(o.config));
  const def = defaultConnection(file);
  const superlinks = Object.entries(file.entries).map(([name, e]) => ({
    name,
    address: e.address,
    federation: e.federation ?? DEFAULT_FEDERATION,
    default: def === name,
    insecure: Boolean(e.insecure),
  }));
  out.result({ path: file.path, superlinks }, (d) =>
    d.superlinks.length === 0
      ? `no SuperLinks in ${d.path}: pollen config superlink add NAME --address HOST:9093 --kit ADMIN_KIT`
      : d.superlinks.map(
          (s) =>
            `${s.default ? '*' : ' '} ${s.name.padEnd(16)} ${s.address.padEnd(28)} federation ${s.federation}${s.insecure ? ' (insecure)' : ''}`,
        ),
  );
}
