import { parseAddress } from './participant-tls.js';

/** The `--metrics-address` value as a listen address; `off` (or an empty value) means no listener. */
export function opsListen(value: string | undefined): { host: string; port: number } | undefined {
  if (value === undefined || value.trim() === '' || value.trim().toLowerCase() === 'off') return undefined;
  return parseAddress(value, '--metrics-address');
}
