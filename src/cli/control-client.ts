/** A Control API client for the federation named on the command line (or the default one). */
import type { Client } from '@connectrpc/connect';
import { Control } from '../gen/pollen/v1/control_pb.js';
import type { ChunkTransport } from '../transport/chunk-transport.js';
import { openChannel } from '../transport/rpc-client.js';
import { configPath, type Federation, loadFederation } from './federations.js';

export interface ControlSession {
  federation: Federation;
  control: Client<typeof Control>;
  /** Chunks to and from the SuperLink (app bundles up, run artefacts down), over the channel's bulk route. */
  chunks: ChunkTransport;
  close(): void;
}

export function openControl(name: string | undefined, configFile?: string): ControlSession {
  const federation = loadFederation(name, configPath(configFile));
  const channel = openChannel({
    baseUrl: federation.url,
    tls: federation.tls,
    defaultTimeoutMs: 60_000,
  });
  const control = channel.client(Control);
  return { federation, control, chunks: channel.chunks(control), close: () => channel.close() };
}

/** Open the federation's Control API for `fn`, and close it when `fn` is done. */
export async function withControl<T>(
  name: string | undefined,
  configFile: string | undefined,
  fn: (s: ControlSession) => Promise<T>,
): Promise<T> {
  const s = openControl(name, configFile);
  try {
    return await fn(s);
  } finally {
    s.close();
  }
}
