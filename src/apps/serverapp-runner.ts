/**
 * Runs a ServerApp for one run: loads it, gives it a RemoteGrid and the run's Context (whose
 * artefacts go to the SuperLink's artefact store), and tells the SuperLink how it ended
 * (completed, or failed with the reason).
 */

import { isPollenError } from '../errors.js';
import { ServerAppIo } from '../gen/pollen/v1/appio_pb.js';
import { createContext } from '../sdk/context.js';
import { kernelMemory } from '../strategies/kernel-memory.js';
import { fromConnectError } from '../transport/errors.js';
import { configFromWire } from '../transport/wire.js';
import { type AppProcessOptions, openAppChannel } from './app-channel.js';
import { builtinServerAppName } from './builtin-names.js';
import { builtinServerApp } from './builtin-serverapp.js';
import { loadServerApp } from './load-app.js';
import { artefactLimitsFromWire, RemoteArtefacts } from './remote-artefacts.js';
import { RemoteGrid } from './remote-grid.js';

export async function runServerApp(o: AppProcessOptions): Promise<number> {
  const channel = openAppChannel(o);
  const client = channel.client(ServerAppIo);
  try {
    const { run, artefactLimits } = await client.getRunInfo({}).catch((e) => {
      throw fromConnectError(e);
    });
    const chunks = channel.chunks(client);
    const context = createContext({
      runId: o.runId,
      nodeId: '0',
      runConfig: configFromWire(run?.runConfig ?? {}),
      artefacts: new RemoteArtefacts(client, chunks, o.runId, artefactLimitsFromWire(artefactLimits)),
      ...(o.resources && { resources: o.resources }),
    });
    const grid = new RemoteGrid(client, chunks, o.runId);
    // Made here, by the host's code, so its growth asks for 2 MiB pages with the host's koffi; the
    // app's bundled strategies find this memory on globalThis (strategies/kernel-memory.ts).
    kernelMemory();
    let outcome: { subStatus: string; reason: string };
    try {
      // Loaded inside: a module without its ServerApp fails the run with that reason and code.
      const builtin = o.appRef && builtinServerAppName(o.appRef);
      const app = builtin ? builtinServerApp(builtin, o.appPath) : await loadServerApp(o.appPath);
      await app.run(grid, context);
      outcome = { subStatus: 'completed', reason: '' };
    } catch (e) {
      if (grid.stopped) return 0;
      process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      const reason = isPollenError(e)
        ? `${e.code}: ${e.message}`
        : e instanceof Error
          ? e.message
          : String(e);
      outcome = { subStatus: 'failed', reason: reason.slice(0, 1000) };
    }
    await client.finishRun(outcome).catch(() => {});
    return outcome.subStatus === 'completed' ? 0 : 1;
  } finally {
    channel.close();
  }
}
