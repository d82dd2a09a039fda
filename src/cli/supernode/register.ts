import { readFileSync } from 'node:fs';
import { PollenError } from '../../errors.js';
import { rpc } from '../../transport/errors.js';
import { withControl } from '../control-client.js';
import type { Output } from '../output.js';

export interface SuperNodeRegisterOptions {
  /** The node's OpenSSH public key file. */
  keyFile: string;
  federation?: string;
  config?: string;
  name?: string;
  /** The site (client certificate name) the key is bound to. */
  site?: string;
}

/** `pollen supernode register`: admit a node's key; prints its node id. */
export async function superNodeRegister(o: SuperNodeRegisterOptions, out: Output): Promise<void> {
  let line: string;
  try {
    line = readFileSync(o.keyFile, 'utf8').trim();
  } catch (e) {
    throw new PollenError('FILE_NOT_FOUND', `Cannot read ${o.keyFile}`, { cause: e });
  }
  await withControl(o.federation, o, async (s) => {
    const { nodeId } = await rpc(
      s.control.registerNode({
        publicKey: line,
        name: o.name ?? '',
        site: o.site ?? '',
        federation: s.federation,
      }),
    );
    out.result(
      { nodeId, superlink: s.connection.name, federation: s.federation, site: o.site ?? null },
      (d) => d.nodeId,
    );
  });
}
