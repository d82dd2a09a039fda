/**
 * ClientApps that run in their own processes, for `pollen simulate` of a Python app: one process
 * per virtual node (its own Context, as on a real node), each served by a ClientAppIo of its own
 * on loopback with the node's id and node config. Seen from the ServerApp's grid they are plain
 * ClientApps: `handle` queues the message for the process and resolves with its reply.
 *
 * One process per node costs an interpreter each (~50 MB with numpy), and is what keeps the
 * app's module-level state per node exactly as on a federation; virtual nodes are few (tens).
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { ExtractedBundle } from '../apps/bundle.js';
import { ClientApp } from '../sdk/app.js';
import type { UserConfigValue } from '../sdk/context.js';
import type { Message } from '../sdk/message.js';
import { MemoryChunkStore } from '../transport/chunks.js';
import { type RpcServer, startRpcServer } from '../transport/rpc-server.js';
import {
  configToWire,
  messageFromWire,
  messageToWire,
  type WireMessage,
  wireErrorReply,
} from '../transport/wire.js';
import { Waiters } from '../util/waiters.js';
import { reapClientApps, spawnClientApp } from './app-process.js';
import {
  type AppSlot,
  appTokenBulkAuth,
  appTokenInterceptor,
  clientAppIoFastChunks,
  clientAppIoRoutes,
} from './clientappio-service.js';

export interface ProcessClientAppsOptions {
  bundle: ExtractedBundle;
  /** The interpreter of the Python ClientApp. */
  python: string;
  runId: string;
  runConfig: Record<string, UserConfigValue>;
  nodes: readonly { nodeId: string; nodeConfig: Record<string, UserConfigValue> }[];
  /** The processes' output, line by line (stdout info, stderr warn). */
  log: Logger;
}

export interface ProcessClientApps {
  /** A ClientApp per node id. */
  apps: Record<string, ClientApp>;
  close(): Promise<void>;
}

/** A virtual node's ClientApp: its process, its ClientAppIo and the replies it waits for. */
class ProcessClientApp extends ClientApp {
  readonly chunks = new MemoryChunkStore();
  readonly waiting = new Map<string, { instruction: WireMessage; done: (reply: WireMessage) => void }>();

  constructor(
    readonly nodeId: string,
    readonly slot: AppSlot,
    readonly tasks: Waiters,
  ) {
    super();
  }

  override async handle(message: Message): Promise<Message> {
    const { wire, chunks } = messageToWire(message);
    for (const [id, data] of chunks) await this.chunks.put(id, data);
    const reply = await new Promise<WireMessage>((done) => {
      this.waiting.set(wire.metadata?.messageId ?? '', { instruction: wire, done });
      this.slot.queue.push(wire);
      this.tasks.notify(this.slot.runId);
    });
    return messageFromWire(reply, (id) => this.chunks.get(id));
  }

  /** A reply of the process (PushResult). */
  async answered(reply: WireMessage): Promise<void> {
    const key = reply.metadata?.replyToMessageId ?? '';
    this.waiting.get(key)?.done(reply);
    this.waiting.delete(key);
  }

  /** The process ended: whatever it held is answered with an error reply. */
  ended(why: string): void {
    for (const { instruction, done } of this.waiting.values())
      done(
        wireErrorReply(
          instruction,
          { code: 'CLIENT_APP_CRASHED', reason: `The ClientApp process ended (${why})` },
          { srcNodeId: this.nodeId, now: Date.now() },
        ),
      );
    this.waiting.clear();
    this.slot.queue.length = 0;
  }
}

export async function startProcessClientApps(o: ProcessClientAppsOptions): Promise<ProcessClientApps> {
  const tasks = new Waiters();
  const servers: RpcServer[] = [];
  const children: ChildProcess[] = [];
  const apps: Record<string, ClientApp> = {};
  const close = async (): Promise<void> => {
    for (const app of Object.values(apps) as ProcessClientApp[]) {
      app.slot.shutdown = true;
      tasks.notify(app.slot.runId);
    }
    await reapClientApps(children);
    await Promise.all(servers.map((s) => s.close()));
  };
  try {
    for (const node of o.nodes) {
      const slot: AppSlot = {
        runId: o.runId,
        token: randomBytes(32).toString('base64url'),
        queue: [],
        shutdown: false,
        runConfig: configToWire(o.runConfig),
      };
      const app = new ProcessClientApp(node.nodeId, slot, tasks);
      apps[node.nodeId] = app;
      const host = { slot: (runId: string) => (runId === slot.runId ? slot : undefined) };
      const server = await startRpcServer({
        log: o.log,
        host: '127.0.0.1',
        port: 0,
        routes: clientAppIoRoutes({
          nodeId: () => node.nodeId,
          nodeConfig: configToWire(node.nodeConfig),
          ...host,
          chunks: app.chunks,
          onResult: (_, reply) => app.answered(reply),
          tasks,
        }),
        interceptors: [appTokenInterceptor(host)],
        bulk: { store: app.chunks, authorize: appTokenBulkAuth(host) },
        fastStreams: clientAppIoFastChunks({ ...host, chunks: app.chunks }),
      });
      servers.push(server);
      const child = spawnClientApp({
        runner: { script: '' }, // Python apps start the interpreter, not the Node runner
        python: o.python,
        appIoUrl: server.url,
        slot,
        bundle: o.bundle,
        gpus: [],
        log: o.log.child({ nodeId: node.nodeId }),
      });
      children.push(child);
      child.once('exit', (code, signal) => app.ended(signal ? `signal ${signal}` : `exit code ${code}`));
      child.once('error', (e) => app.ended(`it did not start: ${e.message}`));
    }
  } catch (e) {
    await close();
    throw e;
  }
  return { apps, close };
}
