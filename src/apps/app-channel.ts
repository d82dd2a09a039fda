/** The loopback AppIo channel an app process uses: cleartext HTTP/2 plus its per-run token. */
import type { Interceptor } from '@connectrpc/connect';
import type { Resources } from '../sdk/context.js';
import { openChannel, type RpcChannel } from '../transport/rpc-client.js';

export interface AppProcessOptions {
  url: string;
  token: string;
  runId: string;
  appPath: string;
  /** A built-in ServerApp (`pollen:FedAvg`); appPath is then the bundle folder. */
  appRef?: string;
  /** What the node gave the process (POLLEN_CPUS, POLLEN_GPUS); default none. */
  resources?: Resources;
}

export function openAppChannel(o: AppProcessOptions): RpcChannel {
  const auth: Interceptor = (next) => (req) => {
    req.header.set('authorization', `Bearer ${o.token}`);
    req.header.set('pollen-run-id', o.runId);
    return next(req);
  };
  return openChannel({
    baseUrl: o.url,
    interceptors: [auth],
    bulkHeaders: () => ({ authorization: `Bearer ${o.token}`, 'pollen-run-id': o.runId }),
  });
}
