/** Why a Pollen service cannot listen on its address, the same way for every service. */
import { PollenError } from '../errors.js';

export interface ListenTarget {
  host: string;
  port: number;
  /** The service or API, for the message: "the Fleet API", "the Certificate Service". */
  what: string;
  /** The option that sets the address, for the hint: "--fleet-address", "--port". */
  option?: string;
}

/** The PollenError for a failed listen(): ADDRESS_IN_USE, a bad address, or UNAVAILABLE. */
export function listenFailure(e: unknown, t: ListenTarget): PollenError {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  const where = `${t.host}:${t.port}`;
  const option = t.option ?? 'address';
  if (code === 'EADDRINUSE')
    return new PollenError(
      'ADDRESS_IN_USE',
      `${cap(t.what)} cannot listen on ${where}: the address is in use`,
      {
        cause: e,
        hint: `Another process holds port ${t.port} (often ${t.what} of a Pollen already running): stop it, or choose another ${option}. \`ss -ltnp 'sport = :${t.port}'\` shows who listens.`,
      },
    );
  if (code === 'EACCES')
    return new PollenError('INVALID_ARGUMENT', `${cap(t.what)} may not listen on ${where} (EACCES)`, {
      cause: e,
      hint: `Ports below 1024 need privileges: choose a port of 1024 or more with ${option}, or grant the service CAP_NET_BIND_SERVICE.`,
    });
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN')
    return new PollenError('INVALID_ARGUMENT', `${t.host} is not an address of this machine (${code})`, {
      cause: e,
      hint: `Give ${option} an address this machine has: 0.0.0.0 (all of them), 127.0.0.1 or one \`ip addr\` lists.`,
    });
  return new PollenError('UNAVAILABLE', `${cap(t.what)} cannot listen on ${where} (${code ?? String(e)})`, {
    cause: e,
    hint: `Check ${option} and the machine's network settings.`,
  });
}

const cap = (s: string): string => s[0]!.toUpperCase() + s.slice(1);

/** Listen on `t.host:t.port`; a failure rejects with listenFailure's error. */
export function listenOn(
  server: {
    once(event: 'error', f: (e: unknown) => void): unknown;
    listen(port: number, host: string, f: () => void): unknown;
    removeAllListeners(event: 'error'): unknown;
  },
  t: ListenTarget,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(listenFailure(e, t)));
    server.listen(t.port, t.host, () => {
      server.removeAllListeners('error');
      resolve();
    });
  });
}
