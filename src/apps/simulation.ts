/**
 * `pollen simulate`: an app's ServerApp and ClientApp on N virtual nodes in this process, with
 * no network, certificates or processes per node (the job of Flower's simulation engine).
 *
 * The app is built with `pollen build` and loaded from its bundle, so the code that runs is the
 * code a federation would run. Virtual node p (0 … N-1) gets the node config `partition-id` = p
 * and `num-partitions` = N, the keys a site operator sets on a real SuperNode, and a node id
 * that sorts in partition order. Messages go through an InMemoryGrid, which copies content both
 * ways as a network does, and strategies aggregate replies in node order: with the same seed, a
 * simulation and a federation whose partitions follow the same order end with the same model.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isPollenError, PollenError } from '../errors.js';
import { type ClientApp, InMemoryGrid, type InMemoryGridOptions, type ServerApp } from '../sdk/app.js';
import { MemoryArtefacts } from '../sdk/artefacts.js';
import { createContext, type UserConfigValue } from '../sdk/context.js';
import { SERVER_NODE_ID } from '../sdk/message.js';
import type { RoundReport } from '../sdk/report.js';
import { buildApp } from './build.js';
import { builtinServerAppName } from './builtin-names.js';
import { builtinServerApp } from './builtin-serverapp.js';
import { type ExtractedBundle, extractBundle } from './bundle.js';
import { loadClientApp, loadServerApp } from './load-app.js';
import { choosePython } from './python-choice.js';
import { runConfigOf } from './run-config.js';
import { type VirtualNode, virtualNodes } from './virtual-nodes.js';

type Config = Record<string, UserConfigValue>;

export interface SimulationOptions {
  appDir: string;
  /** Virtual nodes, 1 … MAX_VIRTUAL_NODES. */
  nodes: number;
  /** Sets the run config `num-rounds` (the app must declare it). */
  numRounds?: number;
  /** Overrides of the app's run config (only keys it declares). */
  runConfig?: Config;
  /** More node config for every virtual node (e.g. a data path); not the PARTITION_KEYS. */
  nodeConfig?: Config;
  /** Where the bundle is built and unpacked; the caller removes it afterwards. */
  workDir: string;
  /** Where the ServerApp's `context.artefacts` go (default: memory without size limits). */
  artefacts?: MemoryArtefacts;
  /** Once the app is built, before its ServerApp starts. */
  onStart?: (plan: SimulationPlan) => void;
  /** After each round the ServerApp reports (as Strategy.start does). */
  onRound?: (round: RoundReport) => void;
  /**
   * Python apps: the ClientApps of the virtual nodes, each in a process of the chosen interpreter
   * (supernode/process-clientapps.ts; given by the caller, which may start processes).
   */
  pythonClientApps?: PythonClientApps;
  /**
   * Python apps with their own ServerApp: that ServerApp, in a process of the chosen interpreter
   * served a ServerAppIo over the simulation's grid (superlink/process-serverapp.ts).
   */
  pythonServerApp?: PythonServerApp;
  /** Python apps: the interpreter asked for (else the first that has the app's requirements). */
  python?: string;
}

export type PythonServerApp = (o: { bundle: ExtractedBundle; python: string }) => ServerApp;

export type PythonClientApps = (o: {
  bundle: ExtractedBundle;
  python: string;
  runId: string;
  runConfig: Config;
  nodes: readonly VirtualNode[];
}) => Promise<{ apps: Record<string, ClientApp>; close(): Promise<void> }>;

export interface SimulationPlan {
  runId: string;
  app: { name: string; version: string; hash: string };
  /** Python apps: the interpreter that runs the ClientApps. */
  python?: { path: string; executable: string; version: string };
  runConfig: Config;
  nodes: VirtualNode[];
}

export interface SimulationResult extends SimulationPlan {
  /** The rounds the ServerApp reported, in order. */
  rounds: RoundReport[];
  /** Wall time of the ServerApp, in seconds. */
  seconds: number;
  /** What the ServerApp saved with `context.artefacts` (also when it failed later). */
  artefacts: MemoryArtefacts;
  /** Why the ServerApp failed; undefined when it returned. */
  error?: PollenError;
}

function invalid(message: string, hint: string): PollenError {
  return new PollenError('INVALID_ARGUMENT', message, { hint });
}

/** The run config with `num-rounds` set, when asked and the app declares it. */
function withRounds(declared: Config, numRounds: number | undefined, appName: string): Config {
  if (numRounds === undefined) return {};
  if (!Number.isSafeInteger(numRounds) || numRounds < 1)
    throw invalid(
      `The number of rounds must be a whole number >= 1, not ${numRounds}`,
      'Give --rounds 1 or more.',
    );
  if (!Object.hasOwn(declared, 'num-rounds'))
    throw invalid(
      `${appName} declares no run config "num-rounds" to set the number of rounds`,
      `Declare "num-rounds" in its package.json ("pollen" → "config") and read it in the ServerApp, or set the key it reads instead (its keys: ${Object.keys(declared).join(', ') || '(none)'}).`,
    );
  return { 'num-rounds': numRounds };
}

/**
 * The app's `min-nodes` run config, where it declares one, against the virtual nodes: a strategy
 * would otherwise wait for nodes that never come (virtual nodes are all there from the start).
 */
function checkMinNodes(runConfig: Config, nodes: number): void {
  const min = runConfig['min-nodes'];
  if (typeof min === 'number' && min > nodes)
    throw invalid(
      `The app needs at least ${min} nodes (run config "min-nodes"), the simulation has ${nodes}`,
      `Simulate with --nodes ${min} or more, or lower it: --run-config min-nodes=${nodes}.`,
    );
}

/** A Grid over the virtual nodes that keeps the rounds the ServerApp reports. */
class SimulationGrid extends InMemoryGrid {
  readonly rounds: RoundReport[] = [];
  readonly #onRound: ((round: RoundReport) => void) | undefined;

  constructor(options: InMemoryGridOptions, onRound?: (round: RoundReport) => void) {
    super(options);
    this.#onRound = onRound;
  }

  async reportRound(report: RoundReport): Promise<void> {
    const round = { round: report.round, metrics: { ...report.metrics }, nodeIds: [...report.nodeIds] };
    this.rounds.push(round);
    this.#onRound?.(round);
  }
}

function failure(e: unknown): PollenError {
  const reason = isPollenError(e) ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e);
  return new PollenError('RUN_FAILED', `The ServerApp failed: ${reason}`, {
    hint: 'The app output above shows where; fix the app and simulate again.',
    cause: e,
  });
}

/** A TypeScript ServerApp from its bundle, a built-in one, or the app's Python ServerApp in a process. */
async function serverAppOf(
  o: SimulationOptions,
  bundle: ExtractedBundle,
  python?: string,
): Promise<ServerApp> {
  const { manifest } = bundle;
  if (manifest.runtime !== 'python') return loadServerApp(bundle.serverappPath);
  const builtin = builtinServerAppName(manifest.serverapp);
  if (builtin !== undefined) return builtinServerApp(builtin, bundle.dir);
  if (!o.pythonServerApp || python === undefined)
    throw new PollenError('INTERNAL', 'Python ServerApps need pythonServerApp to simulate');
  return o.pythonServerApp({ bundle, python });
}

function sameApp(app: ClientApp, nodes: readonly VirtualNode[]): Record<string, ClientApp> {
  return Object.fromEntries(nodes.map((n) => [n.nodeId, app]));
}

async function startPython(o: SimulationOptions, args: Parameters<PythonClientApps>[0]) {
  if (!o.pythonClientApps) throw new PollenError('INTERNAL', 'Python apps need pythonClientApps to simulate');
  return o.pythonClientApps(args);
}

/** Build the app, then run its ServerApp over `nodes` virtual nodes running its ClientApp. */
export async function simulate(o: SimulationOptions): Promise<SimulationResult> {
  const nodes = virtualNodes(o.nodes, o.nodeConfig); // refused before the build
  const built = await buildApp(o.appDir, { outDir: join(o.workDir, 'build') });
  const { manifest } = built;
  const runConfig = runConfigOf(
    manifest.config,
    { ...o.runConfig, ...withRounds(manifest.config, o.numRounds, manifest.name) },
    manifest.name,
  );
  checkMinNodes(runConfig, o.nodes);
  const bundle = await extractBundle(readFileSync(built.path), join(o.workDir, 'apps'));
  const runId = randomBytes(8).toString('hex');
  const python =
    manifest.runtime === 'python'
      ? await choosePython(`${manifest.name} ${manifest.version}`, manifest.requirements ?? [], o.python)
      : undefined;
  const serverApp = await serverAppOf(o, bundle, python?.python);
  const plan: SimulationPlan = {
    runId,
    app: { name: manifest.name, version: manifest.version, hash: built.hash },
    ...(python && {
      python: {
        path: python.python,
        executable: python.check.executable,
        version: python.check.pythonVersion,
      },
    }),
    runConfig,
    nodes,
  };
  const clients = python
    ? await startPython(o, { bundle, python: python.python, runId, runConfig, nodes })
    : { apps: sameApp(await loadClientApp(bundle.clientappPath), nodes), close: async () => {} };
  o.onStart?.(plan);
  const grid = new SimulationGrid(
    {
      runId: plan.runId,
      nodes: Object.fromEntries(
        plan.nodes.map((n) => [
          n.nodeId,
          { app: clients.apps[n.nodeId] as ClientApp, nodeConfig: n.nodeConfig },
        ]),
      ),
      runConfig,
    },
    o.onRound,
  );
  const started = performance.now();
  const artefacts = o.artefacts ?? new MemoryArtefacts();
  let error: PollenError | undefined;
  try {
    await serverApp.run(
      grid,
      createContext({ runId: plan.runId, nodeId: SERVER_NODE_ID, runConfig, artefacts }),
    );
  } catch (e) {
    error = failure(e);
  } finally {
    await clients.close();
  }
  const seconds = (performance.now() - started) / 1000;
  return { ...plan, rounds: grid.rounds, seconds, artefacts, ...(error !== undefined && { error }) };
}
