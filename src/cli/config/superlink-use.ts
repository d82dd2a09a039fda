import { configPath, useConnection } from '../connections.js';
import { bold, type Output } from '../output.js';

export interface SuperLinkUseOptions {
  name: string;
  /** The config file (`--config`). */
  config?: string;
}

/** `pollen config superlink use NAME`: the connection commands use when they name none. */
export async function superLinkUse(o: SuperLinkUseOptions, out: Output): Promise<void> {
  useConnection(o.name, configPath(o.config));
  out.result({ default: o.name, path: configPath(o.config) }, (d) => `default SuperLink: ${bold(d.default)}`);
}
