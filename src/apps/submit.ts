/**
 * Submitting a run: build the app folder into a bundle, push its content-addressed chunks to the
 * SuperLink (only those it lacks) and start a run of it on a federation, over a Control API
 * client. `pollen run` calls it; so can any other front end that holds a Control client.
 */
import { readFileSync } from 'node:fs';
import type { Client } from '@connectrpc/connect';
import type { Control } from '../gen/pollen/v1/control_pb.js';
import type { UserConfigValue } from '../sdk/context.js';
import { uploadChunks } from '../transport/chunk-transfer.js';
import type { ChunkTransport } from '../transport/chunk-transport.js';
import { CHUNK_SIZE, chunkId } from '../transport/chunks.js';
import { rpc } from '../transport/errors.js';
import { configToWire } from '../transport/wire.js';
import { buildApp } from './build.js';
import { runConfigOf } from './run-config.js';

export interface SubmitProgress {
  /** `build`: the app is being bundled; `push`: its chunks are going to the SuperLink. */
  kind: 'build' | 'push';
  message: string;
}

export interface SubmitRunOptions {
  control: Client<typeof Control>;
  /** Chunk uploads to the same SuperLink. */
  chunks: ChunkTransport;
  appDir: string;
  /** Overrides of the app's default run config. */
  runConfig: Readonly<Record<string, UserConfigValue>>;
  /** The federation the run belongs to, as the SuperLink names it. */
  federation: string;
  onProgress?: (e: SubmitProgress) => void;
}

export interface SubmittedRun {
  runId: string;
  /** The app's name (package.json). */
  app: string;
  /** `sha256:HEX` of the bundle. */
  hash: string;
}

/** Cut a bundle into chunks named by their SHA-256 (views into `bytes`, no copy). */
function chunksOf(bytes: Uint8Array): { chunks: Map<string, Uint8Array>; ids: string[] } {
  const chunks = new Map<string, Uint8Array>();
  const ids: string[] = [];
  for (let i = 0; i < bytes.length; i += CHUNK_SIZE) {
    const part = bytes.subarray(i, Math.min(i + CHUNK_SIZE, bytes.length));
    const id = chunkId(part);
    chunks.set(id, part);
    ids.push(id);
  }
  return { chunks, ids };
}

/** Build `appDir`, push the bundle and start a run of it; the run id, app name and bundle hash. */
export async function submitRun(o: SubmitRunOptions): Promise<SubmittedRun> {
  const runConfig = configToWire(o.runConfig);
  o.onProgress?.({ kind: 'build', message: `building ${o.appDir}` });
  const built = await buildApp(o.appDir);
  runConfigOf(built.manifest.config, o.runConfig, built.manifest.name); // refused before the push
  const bytes = readFileSync(built.path);
  const { chunks, ids } = chunksOf(bytes);
  o.onProgress?.({
    kind: 'push',
    message: `pushing ${built.manifest.name} (${(bytes.length / 1e6).toFixed(1)} MB, ${built.hash}) to ${o.federation}`,
  });
  await rpc(uploadChunks(o.chunks, chunks));
  const { runId } = await rpc(
    o.control.startRun({
      fab: {
        hash: built.hash,
        size: BigInt(bytes.length),
        chunkIds: ids,
        name: built.manifest.name,
        version: built.manifest.version,
      },
      runConfig,
      federation: o.federation,
    }),
  );
  return { runId, app: built.manifest.name, hash: built.hash };
}
