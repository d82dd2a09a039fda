/**
 * The SuperNode's side of ClientAppIo without a federation: the node's own ClientAppIo service
 * (a real cleartext HTTP/2 server on 127.0.0.1) and its own app launcher, with the test in the
 * place of the Fleet API. A test queues instructions made by the TypeScript SDK and reads the
 * replies the app process pushes, decoded by the TypeScript SDK. For interop tests and bench/.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Logger } from 'pino';
import type { BundleManifest, ExtractedBundle } from '../../src/apps/bundle.js';
import type { UserConfigValue } from '../../src/sdk/context.js';
import type { Message } from '../../src/sdk/message.js';
import { type RunnerEntry, spawnClientApp } from '../../src/supernode/app-process.js';
import {
  type AppSlot,
  appTokenBulkAuth,
  appTokenInterceptor,
  clientAppIoFastChunks,
  clientAppIoRoutes,
} from '../../src/supernode/clientappio-service.js';
import { MemoryChunkStore } from '../../src/transport/chunks.js';
import { startRpcServer } from '../../src/transport/rpc-server.js';
import { configToWire, messageFromWire, messageToWire, type WireMessage } from '../../src/transport/wire.js';
import { Waiters } from '../../src/util/waiters.js';
import { PYTHON } from './python.js';

export const NODE_ID = '4242';

export interface AppProcess {
  child: ChildProcess;
  /** Lines the app wrote (stdout and stderr), as the node's log gets them. */
  lines: string[];
  exited: Promise<number | null>;
}

export interface ClientAppIoHarness {
  readonly url: string;
  readonly runId: string;
  readonly chunks: MemoryChunkStore;
  /** Queue an instruction for the app (run and node filled in); its chunks go to the node's store. */
  send(message: Message): WireMessage;
  /**
   * `send` in two steps: the instruction's chunks named and put in the node's store now (as a
   * SuperNode holds an instruction's chunks before its app asks), queued for the app by `queue`.
   */
  stage(message: Message): { wire: WireMessage; queue(): void };
  /** The next reply the app pushed, decoded with the node's chunks. */
  reply(timeoutMs?: number): Promise<Message>;
  /** The next reply as pushed (its chunks in the node's store), not decoded: what a SuperNode forwards. */
  replyWire(timeoutMs?: number): Promise<WireMessage>;
  /** A reply from replyWire, decoded with the node's chunks. */
  decode(reply: WireMessage): Promise<Message>;
  /** Start the run's ClientApp as the SuperNode does: a Python ref (`module:attr`) or a TS file. */
  startApp(app: { dir: string; python?: string; ts?: string; gpus?: number[] }): AppProcess;
  /** Tell the app the run ended (its next pull says shutdown). */
  end(): void;
  close(): Promise<void>;
}

const silent = (): void => {};

/** The TypeScript runner from source through tsx, so an app may be a .ts file (built or not). */
function sourceRunner(): RunnerEntry {
  const loader = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  return {
    script: join(import.meta.dirname, '..', '..', 'src', 'apps', 'runner.ts'),
    execArgv: ['--import', loader],
  };
}

export async function startClientAppIo(
  o: { runConfig?: Record<string, UserConfigValue>; nodeConfig?: Record<string, UserConfigValue> } = {},
): Promise<ClientAppIoHarness> {
  const runId = `run-${randomBytes(4).toString('hex')}`;
  const slot: AppSlot = {
    runId,
    token: randomBytes(32).toString('base64url'),
    queue: [],
    shutdown: false,
    runConfig: configToWire(o.runConfig ?? {}),
  } as AppSlot;
  const chunks = new MemoryChunkStore();
  const tasks = new Waiters();
  const replies: WireMessage[] = [];
  const replyWaiters = new Waiters();
  const find = (id: string) => (id === runId ? slot : undefined);
  const log = { error: silent, warn: silent, info: silent } as unknown as Logger;
  const server = await startRpcServer({
    log,
    host: '127.0.0.1',
    port: 0,
    routes: clientAppIoRoutes({
      nodeId: () => NODE_ID,
      nodeConfig: configToWire(o.nodeConfig ?? {}),
      slot: find,
      chunks,
      onResult: async (_slot, reply) => {
        replies.push(reply);
        replyWaiters.notify('reply');
      },
      tasks,
    }),
    interceptors: [appTokenInterceptor({ slot: find })],
    bulk: { store: chunks, authorize: appTokenBulkAuth({ slot: find }) },
    fastStreams: clientAppIoFastChunks({ slot: find, chunks }),
  });
  const apps: ChildProcess[] = [];
  const stage = (message: Message): { wire: WireMessage; queue(): void } => {
    const m = message.withMetadata({ runId, dstNodeId: NODE_ID });
    const { wire, chunks: pieces } = messageToWire(m);
    for (const [id, data] of pieces) chunks.putView(id, data);
    return {
      wire,
      queue() {
        slot.queue.push(wire);
        tasks.notify(runId);
      },
    };
  };
  const replyWire = async (timeoutMs = 60_000): Promise<WireMessage> => {
    const deadline = Date.now() + timeoutMs;
    while (replies.length === 0) {
      if (Date.now() >= deadline) throw new Error('no reply from the app in time');
      await replyWaiters.wait('reply', deadline - Date.now());
    }
    return replies.shift()!;
  };
  const decode = (reply: WireMessage): Promise<Message> => {
    // The node's store holds only verified chunks (its own cuts; PushChunks hashes each one),
    // as the SuperNode forwards a reply without hashing it again.
    return messageFromWire(reply, (id) => chunks.get(id), { verified: true });
  };
  return {
    url: server.url,
    runId,
    chunks,
    stage,
    send(message) {
      const staged = stage(message);
      staged.queue();
      return staged.wire;
    },
    replyWire,
    decode,
    reply: async (timeoutMs) => decode(await replyWire(timeoutMs)),
    startApp(app) {
      const lines: string[] = [];
      const manifest = { runtime: app.python ? 'python' : undefined, clientapp: app.python ?? '' };
      const bundle = {
        dir: app.dir,
        manifest: manifest as unknown as BundleManifest,
        clientappPath: app.ts ?? '',
        serverappPath: '',
        hash: '',
      } as ExtractedBundle;
      const record = (_fields: unknown, line: string): void => {
        lines.push(line);
      };
      const child = spawnClientApp({
        runner: sourceRunner(),
        python: PYTHON,
        appIoUrl: server.url,
        slot,
        bundle,
        gpus: app.gpus ?? [],
        log: { info: record, warn: record } as unknown as Logger,
      });
      apps.push(child);
      const exited = new Promise<number | null>((resolve) =>
        child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', (code) => resolve(code)),
      );
      return { child, lines, exited };
    },
    end() {
      slot.shutdown = true;
      tasks.notify(runId);
    },
    async close() {
      slot.shutdown = true;
      tasks.notify(runId);
      for (const c of apps) if (c.exitCode === null) c.kill('SIGKILL');
      await server.close();
    },
  };
}

/** Peak resident memory of a live process, in bytes (VmHWM of /proc/PID/status). */
export function peakRss(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmHWM for process ${pid}`);
  return Number(m[1]) * 1024;
}

/** CPU time a live process has used (user + system), in seconds (/proc/PID/stat, 100 ticks a second). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
