/**
 * `pollen demo oidc-provider`: the demo's embedded OpenID Provider in a process of its own, until
 * stopped. `pollen demo --oidc` runs its provider this way, so that with `--keep` the provider
 * stays with the federation and the researcher's login goes on refreshing after the demo ends.
 */
import { PollenError } from '../../errors.js';
import { untilSignal } from '../command.js';
import { bold, type Output } from '../output.js';

export interface DemoProviderOptions {
  port: string;
  accessTokenTtl: string;
}

/** `--access-token-ttl SECONDS`, checked (INVALID_ARGUMENT). */
export function accessTokenTtl(text: string): number {
  const ttl = Number(text);
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > 86_400)
    throw new PollenError('INVALID_ARGUMENT', '--access-token-ttl must be 1 to 86400 seconds');
  return ttl;
}

export async function demoOidcProvider(o: DemoProviderOptions, out: Output): Promise<void> {
  const port = Number(o.port);
  if (!Number.isInteger(port) || port < 0 || port > 65_535)
    throw new PollenError('INVALID_ARGUMENT', '--port must be a port number (0: any free port)');
  const ttl = accessTokenTtl(o.accessTokenTtl);
  const { startDemoProvider } = await import('../../demo/researcher.js');
  const provider = await startDemoProvider({ port, accessTokenTtl: ttl });
  out.result({ issuer: provider.issuer, audience: provider.audience, clientId: provider.clientId }, (d) => [
    `OpenID Provider ${bold(d.issuer)} for ${d.audience} (client ${d.clientId}); stop it with Ctrl-C`,
  ]);
  await untilSignal(() => provider.close());
}
