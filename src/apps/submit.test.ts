import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@connectrpc/connect';
import { afterAll, describe, expect, it } from 'vitest';
import type { Control } from '../gen/pollen/v1/control_pb.js';
import type { ChunkInit, ChunkTransport } from '../transport/chunk-transport.js';
import { CHUNK_SIZE, chunkId } from '../transport/chunks.js';
import { type SubmitProgress, submitRun } from './submit.js';

const work = mkdtempSync(join(tmpdir(), 'pollen-submit-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** An app whose bundle spans two chunks (a 5 MiB asset of random bytes). */
function app(name: string): string {
  const dir = join(work, name);
  mkdirSync(join(dir, 'src'), { recursive: true });
  mkdirSync(join(dir, 'assets'));
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({
      name: 'submitted',
      version: '0.4.0',
      type: 'module',
      pollen: {
        serverapp: 'src/server.ts',
        clientapp: 'src/client.ts',
        assets: ['./assets/*.bin'],
        config: { 'num-rounds': 3, 'learning-rate': 0.01, mode: 'slow', verbose: false },
      },
    }),
  );
  writeFileSync(
    join(dir, 'src/server.ts'),
    "import { ServerApp } from 'pollen/sdk';\nexport default new ServerApp(async () => {});\n",
  );
  writeFileSync(
    join(dir, 'src/client.ts'),
    "import { ClientApp } from 'pollen/sdk';\nexport default new ClientApp({});\n",
  );
  writeFileSync(join(dir, 'assets/weights.bin'), randomBytes(5 * 1024 * 1024));
  return dir;
}

/** A SuperLink that already holds `held` chunks: what it is asked, sent and told to start. */
function superlink(held: (ids: string[]) => string[] = () => []) {
  const pushed: ChunkInit[] = [];
  const started: unknown[] = [];
  const chunks: ChunkTransport = {
    perChunk: true,
    missing: async (ids) => ids.filter((id) => !held(ids).includes(id)),
    push: async (next, options) => {
      for (let c = await next(); c; c = await next()) {
        pushed.push({ id: c.id, data: Uint8Array.from(c.data) });
        options?.onSent?.(c);
      }
    },
    pull: () => {
      throw new Error('not used');
    },
  };
  const control = {
    startRun: async (req: unknown) => {
      started.push(req);
      return { runId: 'run-1' };
    },
  } as unknown as Client<typeof Control>;
  return { chunks, control, pushed, started };
}

describe('submitRun', () => {
  it('builds the app, pushes only the chunks the SuperLink lacks and starts a run of the bundle', async () => {
    const dir = app('two-chunks');
    // The SuperLink holds the first chunk already (an earlier run of the same bundle).
    const link = superlink((ids) => ids.slice(0, 1));
    const progress: SubmitProgress[] = [];
    const run = await submitRun({
      control: link.control,
      chunks: link.chunks,
      appDir: dir,
      runConfig: { 'num-rounds': 5, 'learning-rate': 0.05, mode: 'fast', verbose: true },
      federation: 'local',
      onProgress: (e) => progress.push(e),
    });
    expect(run).toMatchObject({ runId: 'run-1', app: 'submitted', hash: expect.stringMatching(/^sha256:/) });
    const bundle = readFileSync(join(dir, 'dist', 'submitted-0.4.0.pollen'));
    const ids: string[] = [];
    for (let i = 0; i < bundle.length; i += CHUNK_SIZE) ids.push(chunkId(bundle.subarray(i, i + CHUNK_SIZE)));
    expect(ids).toHaveLength(2);
    expect(link.pushed.map((c) => c.id)).toEqual([ids[1]]);
    expect(Buffer.from(link.pushed[0]!.data).equals(bundle.subarray(CHUNK_SIZE))).toBe(true);
    expect(link.started).toHaveLength(1);
    expect(link.started[0]).toMatchObject({
      fab: {
        hash: run.hash,
        size: BigInt(bundle.length),
        chunkIds: ids,
        name: 'submitted',
        version: '0.4.0',
      },
      federation: 'local',
      runConfig: {
        'num-rounds': { value: { case: 'number', value: 5 } },
        'learning-rate': { value: { case: 'number', value: 0.05 } },
        mode: { value: { case: 'text', value: 'fast' } },
        verbose: { value: { case: 'flag', value: true } },
      },
    });
    expect(progress.map((p) => p.kind)).toEqual(['build', 'push']);
    expect(progress[1]!.message).toBe(
      `pushing submitted (${(bundle.length / 1e6).toFixed(1)} MB, ${run.hash}) to local`,
    );
  });

  it('refuses a run config it cannot send before it builds or sends anything', async () => {
    const dir = app('bad-config');
    const link = superlink();
    await expect(
      submitRun({
        control: link.control,
        chunks: link.chunks,
        appDir: dir,
        runConfig: { 'a\u0001b': 1 },
        federation: 'local',
      }),
    ).rejects.toMatchObject({ code: 'RECORD_INVALID' });
    expect(existsSync(join(dir, 'dist'))).toBe(false);
    expect(link.pushed).toEqual([]);
    expect(link.started).toEqual([]);
  });

  it('refuses a run config key the app does not declare before it pushes anything', async () => {
    const link = superlink();
    await expect(
      submitRun({
        control: link.control,
        chunks: link.chunks,
        appDir: app('typo'),
        runConfig: { 'num-round': 2 },
        federation: 'local',
      }),
    ).rejects.toMatchObject({
      code: 'RUN_CONFIG_UNKNOWN',
      message: 'The app submitted has no run config "num-round"',
      data: { suggestion: 'num-rounds' },
    });
    expect(link.pushed).toEqual([]);
    expect(link.started).toEqual([]);
  });
});
