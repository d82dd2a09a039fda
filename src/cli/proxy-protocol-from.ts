import { isIP } from 'node:net';
import { PollenError } from '../errors.js';
import type { ProxyProtocolOptions } from '../transport/proxy-listener.js';

/** The value of `--proxy-protocol-from` (IP[,IP…]) as listener options; undefined when not given. */
export function proxyProtocolFrom(text: string | undefined): ProxyProtocolOptions | undefined {
  if (text === undefined || text.trim() === '') return undefined;
  const from = text.split(',').map((a) => a.trim());
  for (const address of from)
    if (!isIP(address))
      throw new PollenError(
        'INVALID_ARGUMENT',
        `--proxy-protocol-from takes IP addresses, not "${address}"`,
        {
          hint: 'Name each proxy by the address it connects from, e.g. --proxy-protocol-from 10.0.0.5,fd00::5 (no names, no ranges: only these hosts are believed).',
        },
      );
  return { from };
}
