/**
 * Runs a ClientApp for one run on one node: pull an instruction from the SuperNode (ClientAppIo),
 * handle it, push the reply. The Context (and so the app's state) lives as long as the process,
 * which the SuperNode keeps for the whole run.
 */
import { toPollenError } from '../errors.js';
import { ClientAppIo } from '../gen/pollen/v1/appio_pb.js';
import { CLIENT_ARTEFACTS } from '../sdk/artefacts.js';
import type { Context } from '../sdk/context.js';
import { createContext } from '../sdk/context.js';
import type { MessageError } from '../sdk/message.js';
import { downloadChunks, uploadMessage } from '../transport/chunk-transfer.js';
import { MemoryChunkStore } from '../transport/chunks.js';
import { fromConnectError } from '../transport/errors.js';
import { chunkIdsOf, configFromWire, messageFromWire, wireErrorReply } from '../transport/wire.js';
import { clip } from '../util/text.js';
import { type AppProcessOptions, openAppChannel } from './app-channel.js';
import { loadClientApp } from './load-app.js';

const PULL_WAIT_MS = 20_000;
const MAX_REASON_LENGTH = 1000;

/** The error reply's content for an app that could not be loaded: code, message and hint. */
export function refusalOf(e: unknown): MessageError {
  const err = toPollenError(e);
  return { code: err.code, reason: clip(`${err.message}. ${err.hint}`, MAX_REASON_LENGTH) };
}

export async function runClientApp(o: AppProcessOptions): Promise<number> {
  const channel = openAppChannel(o);
  const client = channel.client(ClientAppIo);
  const chunks = channel.chunks(client);
  const call = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (e) {
      throw fromConnectError(e);
    }
  };
  let stop = false;
  process.once('SIGTERM', () => {
    stop = true;
  });
  try {
    // A module that gives no ClientApp refuses every instruction with the reason and the hint,
    // so the run hears it as soon as it reaches this node, not as a round without replies.
    const loaded = await loadClientApp(o.appPath).then(
      (app) => ({ app }),
      (e: unknown) => ({ refusal: refusalOf(e) }),
    );
    let context: Context | undefined;
    while (!stop) {
      const task = await call(() => client.pullTask({ waitMs: PULL_WAIT_MS }));
      if (task.shutdown) break;
      if (!task.message) continue;
      if ('refusal' in loaded) {
        const refused = wireErrorReply(task.message, loaded.refusal, {
          srcNodeId: task.nodeId,
          now: Date.now(),
        });
        await call(() => client.pushResult({ message: refused }));
        continue;
      }
      const { app } = loaded;
      context ??= createContext({
        runId: o.runId,
        nodeId: task.nodeId,
        nodeConfig: configFromWire(task.nodeConfig),
        runConfig: configFromWire(task.runConfig),
        artefacts: CLIENT_ARTEFACTS,
        ...(o.resources && { resources: o.resources }),
      });
      const store = new MemoryChunkStore();
      const ids = chunkIdsOf(task.message);
      if (ids.length > 0) await call(() => downloadChunks(chunks, ids, store));
      const message = await messageFromWire(task.message, (id) => store.get(id));
      const reply = await app.handle(message, context);
      // The reply's chunks are hashed while the previous ones are on the wire; those not in the
      // instruction (a trained model) are new to the SuperNode, so no MissingChunks for them.
      const received = new Set(ids);
      const { wire } = await call(() => uploadMessage(chunks, reply, { fresh: (id) => !received.has(id) }));
      await call(() => client.pushResult({ message: wire }));
    }
    return 0;
  } finally {
    channel.close();
  }
}
