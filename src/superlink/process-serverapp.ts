/**
 * A Python ServerApp in a process of its own, for `pollen simulate`: seen from the simulation it
 * is a plain ServerApp; inside, it serves the process the SuperLink's ServerAppIo handlers
 * (serverappio-service.ts) over loopback with a per-run token, backed by the simulation's grid
 * and artefacts instead of a Link. The app therefore runs exactly the code it runs on a federation.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createInterface } from 'node:readline';
import { setTimeout as delay } from 'node:timers/promises';
import { create } from '@bufbuild/protobuf';
import type { Logger } from 'pino';
import { appEnvironment, resourceVariables } from '../apps/app-env.js';
import type { ExtractedBundle } from '../apps/bundle.js';
import { pythonAppVariables, pythonRunnerArgs } from '../apps/python-env.js';
import { PollenError } from '../errors.js';
import { RunSchema } from '../gen/pollen/v1/records_pb.js';
import { type Grid, ServerApp } from '../sdk/app.js';
import type { ArtefactLimits } from '../sdk/artefacts.js';
import type { Context } from '../sdk/context.js';
import { SERVER_NODE_ID } from '../sdk/message.js';
import { reportRound } from '../sdk/report.js';
import { CHUNK_SIZE, type ChunkStore, MemoryChunkStore } from '../transport/chunks.js';
import { startRpcServer } from '../transport/rpc-server.js';
import { configToWire, messageFromWire, messageToWire, type WireMessage } from '../transport/wire.js';
import type { SaveArtefactInput } from './artefacts.js';
import type { ArtefactRecord } from './run-artefacts.js';
import type { RoundMetrics } from './run-records.js';
import {
  runChunkStore,
  runTokenBulkAuth,
  runTokenInterceptor,
  type ServerAppIoHost,
  serverAppIoRoutes,
} from './serverappio-service.js';

/** How often a PullReplies that waits looks at the grid again (the Grid interface has no wait per reply). */
const POLL_MS = 20;
/** A PullReplies waits at most this long, as on the SuperLink. */
const MAX_WAIT_MS = 30_000;

export interface ProcessServerAppOptions {
  bundle: ExtractedBundle;
  /** The interpreter of the Python ServerApp. */
  python: string;
  /** The limits `context.artefacts` applies, told to the app as the SuperLink tells them. */
  artefactLimits: ArtefactLimits;
  /** The process's output, line by line (stdout info, stderr warn). */
  log: Logger;
}

interface Outcome {
  subStatus: 'completed' | 'failed' | 'stopped';
  reason: string;
}

/**
 * ServerAppIo over a simulation's grid and context: one run, one token, chunks in memory (kept
 * until the run ends, as a SuperLink keeps a run's chunks).
 */
function gridHost(grid: Grid, context: Context, token: string, o: ProcessServerAppOptions) {
  const chunks = new MemoryChunkStore();
  const rounds: RoundMetrics[] = [];
  const expected = Buffer.from(token);
  let outcome: Outcome | undefined;
  const toWire = async (reply: Parameters<typeof messageToWire>[0]): Promise<WireMessage> => {
    const { wire, chunks: pieces } = messageToWire(reply);
    for (const [id, data] of pieces) await chunks.put(id, data);
    return wire;
  };
  const host: ServerAppIoHost = {
    chunkLimits: { maxChunkBytes: CHUNK_SIZE, maxChunks: 1 << 20 },
    log: o.log,
    appReads: () => chunks,
    appUploads: () => chunks,
    wireRun: async (runId) =>
      create(RunSchema, { runId, status: 'running', runConfig: configToWire(context.runConfig) }),
    nodesOfRun: () => grid.nodeIds(),
    pushInstructions: async (runId, messages) => {
      const decoded = [];
      for (const m of messages) {
        // Stamped as the SuperLink stamps them (link.ts); the grid checks the rest.
        if (m.metadata) Object.assign(m.metadata, { runId, srcNodeId: SERVER_NODE_ID });
        decoded.push(await messageFromWire(m, (id) => chunks.get(id)));
      }
      return grid.send(decoded);
    },
    pullReplies: async (_runId, ids, waitMs, signal) => {
      const deadline = Date.now() + Math.min(waitMs, MAX_WAIT_MS);
      for (;;) {
        const replies = await grid.pull(ids);
        if (replies.length > 0 || outcome || signal?.aborted || Date.now() >= deadline)
          return Promise.all(replies.map(toWire));
        await delay(POLL_MS);
      }
    },
    state: {
      verifyRunToken: async (runId, given) => {
        const b = Buffer.from(given);
        return runId === grid.runId && b.length === expected.length && timingSafeEqual(b, expected);
      },
      getRun: async () => ({ status: outcome ? 'finished' : 'running' }),
      appendLogs: async (_runId, lines) => {
        for (const l of lines) o.log[l.stream === 'stderr' ? 'warn' : 'info']({ app: 'serverapp' }, l.text);
        return lines.length;
      },
      addRoundMetrics: async (_runId, r) => {
        const round: RoundMetrics = {
          round: r.round,
          at: r.at ?? Date.now(),
          metrics: r.metrics,
          nodeIds: r.nodeIds ?? [],
          bytesSent: r.bytesSent ?? 0,
          bytesReceived: r.bytesReceived ?? 0,
          replies: r.replies ?? 0,
          failures: r.failures ?? 0,
        };
        rounds.push(round);
        await reportRound(grid, { round: round.round, metrics: round.metrics, nodeIds: round.nodeIds });
        return round;
      },
      listRoundMetrics: async () => rounds,
    },
    artefacts: {
      limits: o.artefactLimits,
      save: async (_runId, a, source) => saveArtefact(context, a, source),
    },
  };
  const launcher = {
    finish: async (_runId: string, subStatus: Outcome['subStatus'], reason = '') => {
      outcome ??= { subStatus, reason };
    },
  };
  return { host, launcher, outcome: () => outcome };
}

/** The artefact's chunks, joined and checked against its hash, saved to the simulation's artefacts. */
async function saveArtefact(
  context: Context,
  a: SaveArtefactInput,
  source: ChunkStore,
): Promise<ArtefactRecord> {
  const parts: Uint8Array[] = [];
  for (const id of a.chunkIds) {
    const data = await source.get(id);
    if (!data)
      throw new PollenError(
        'CHUNK_MISSING',
        `Push the chunks of artefact "${a.name}" first: ${id} is missing`,
        {
          data: { chunkIds: [id] },
        },
      );
    parts.push(data);
  }
  const bytes = Buffer.concat(parts);
  const hash = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  if (bytes.byteLength !== a.size || hash !== a.hash)
    throw new PollenError(
      'ARTEFACT_INVALID',
      `Artefact "${a.name}" is ${bytes.byteLength} bytes with ${hash}, not the ${a.size} bytes with ${a.hash} announced`,
    );
  await context.artefacts.save(a.name, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  return { name: a.name, hash: a.hash, size: a.size, chunkIds: a.chunkIds, savedAt: Date.now() };
}

/** Wait for the process to exit; the last line it wrote to stderr explains a failure. */
function follow(child: ChildProcess, log: Logger): Promise<{ exit: string; lastError: string }> {
  let lastError = '';
  for (const [stream, level] of [
    [child.stdout!, 'info'],
    [child.stderr!, 'warn'],
  ] as const)
    createInterface({ input: stream }).on('line', (line) => {
      if (level === 'warn' && line.trim()) lastError = line.trim();
      log[level]({ app: 'serverapp' }, line);
    });
  return new Promise((resolve) => {
    child.once('error', (e) => resolve({ exit: `it did not start: ${e.message}`, lastError }));
    child.once('close', (code, signal) =>
      resolve({ exit: signal ? `signal ${signal}` : `exit code ${code}`, lastError }),
    );
  });
}

/** A ServerApp that runs the bundle's Python ServerApp in a process of `o.python`. */
export function processServerApp(o: ProcessServerAppOptions): ServerApp {
  return new ServerApp(async (grid, context) => {
    const token = randomBytes(32).toString('base64url');
    const { host, launcher, outcome } = gridHost(grid, context, token, o);
    const server = await startRpcServer({
      log: o.log,
      host: '127.0.0.1',
      port: 0,
      routes: serverAppIoRoutes(host, launcher),
      interceptors: [runTokenInterceptor(host)],
      bulk: { store: runChunkStore(host), authorize: runTokenBulkAuth(host) },
    });
    let child: ChildProcess | undefined;
    try {
      const { bundle } = o;
      child = spawn(o.python, pythonRunnerArgs('serverapp'), {
        cwd: bundle.dir,
        env: appEnvironment({
          ...pythonAppVariables({
            appIoUrl: server.url,
            runId: grid.runId,
            token,
            ref: bundle.manifest.serverapp,
            bundleDir: bundle.dir,
          }),
          ...resourceVariables(undefined, []),
        }),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const { exit, lastError } = await follow(child, o.log);
      const done = outcome();
      if (!done)
        throw new Error(
          `The ServerApp exited (${exit}) without finishing its run${lastError ? `: ${lastError}` : ''}`,
        );
      // simulate() reports it as RUN_FAILED with this reason (the app's own code and message).
      if (done.subStatus !== 'completed')
        throw new Error(done.reason || `The ServerApp ${done.subStatus} the run`);
    } finally {
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await server.close();
    }
  });
}
