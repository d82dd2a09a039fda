import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PollenError } from '../../errors.js';
import { MAX_RUN_ARTEFACTS, MemoryArtefacts } from '../../sdk/artefacts.js';
import type { RoundReport } from '../../sdk/report.js';
import { DEFAULT_LIMITS } from '../../superlink/quotas.js';
import { parseConfigPairs } from '../config-pairs.js';
import { bold, dim, formatMetrics, type Output, ok } from '../output.js';
import { writeArtefactFile } from '../runs/artefact-files.js';
import { formatArtefact } from '../runs/format.js';
import { appLogger, withAppOutput } from './app-output.js';

export interface SimulateOptions {
  /** The app folder (default: the working folder). */
  appDir: string;
  /** Virtual nodes, as typed. */
  nodes: string;
  /** Sets the run config `num-rounds`, as typed. */
  rounds?: string;
  /** `k=v` overrides of the app's run config. */
  runConfig: string[];
  /** `k=v` node config for every virtual node. */
  nodeConfig: string[];
  /** Where the ServerApp's artefacts are written (default: ./RUN_ID, only if it saved any). */
  output?: string;
  /** Python apps: the interpreter of the ClientApps (else the first that has the requirements). */
  python?: string;
}

function wholeNumber(value: string, flag: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isSafeInteger(n))
    throw new PollenError('INVALID_ARGUMENT', `${flag} takes a whole number, not "${value}"`);
  return n;
}

const roundLine = (r: RoundReport): string =>
  `round ${r.round}: ${formatMetrics(r.metrics)} ${dim(`(${r.nodeIds.length} nodes)`)}`;

/** What the ServerApp saved, written as `pollen pull` writes a run's artefacts. */
async function writeArtefacts(artefacts: MemoryArtefacts, output: string) {
  const dir = resolve(output);
  const saved = artefacts.list();
  const written = [];
  for (const a of saved) written.push({ ...a, path: writeArtefactFile(dir, a.name, artefacts.get(a.name)!) });
  return { dir: saved.length > 0 ? dir : null, artefacts: written };
}

/** `pollen simulate`: the app on N virtual nodes in this process, with progress per round. */
export async function simulateApp(o: SimulateOptions, out: Output): Promise<void> {
  const nodes = wholeNumber(o.nodes, '--nodes');
  const numRounds = o.rounds === undefined ? undefined : wholeNumber(o.rounds, '--rounds');
  const runConfig = parseConfigPairs(o.runConfig, '--run-config');
  if (numRounds !== undefined && Object.hasOwn(runConfig, 'num-rounds'))
    throw new PollenError('INVALID_ARGUMENT', '--rounds and --run-config num-rounds=… say the same thing', {
      hint: 'Give the number of rounds once.',
    });
  // Loaded here: the bundler is only needed by this command.
  const { simulate } = await import('../../apps/simulation.js');
  const { startProcessClientApps } = await import('../../supernode/process-clientapps.js');
  const { processServerApp } = await import('../../superlink/process-serverapp.js');
  // A SuperLink's default limits, so an app that fits here fits a default federation.
  const artefactLimits = {
    maxBytes: DEFAULT_LIMITS.artefactMaxBytes,
    runMaxBytes: DEFAULT_LIMITS.runArtefactBytes,
    runMaxCount: MAX_RUN_ARTEFACTS,
  };
  const workDir = mkdtempSync(join(tmpdir(), 'pollen-simulate-'));
  try {
    out.progress(`building ${o.appDir}`);
    const result = await withAppOutput(out, () =>
      simulate({
        appDir: o.appDir,
        nodes,
        ...(numRounds !== undefined && { numRounds }),
        runConfig,
        nodeConfig: parseConfigPairs(o.nodeConfig, '--node-config'),
        workDir,
        ...(o.python !== undefined && { python: o.python }),
        // One process per virtual node, its output shown as the app's.
        pythonClientApps: (p) => startProcessClientApps({ ...p, log: appLogger(out) }),
        // Its own process too, speaking ServerAppIo as on a SuperLink.
        pythonServerApp: (p) => processServerApp({ ...p, artefactLimits, log: appLogger(out) }),
        artefacts: new MemoryArtefacts(artefactLimits),
        onStart: (p) =>
          out.progress(
            `simulating ${p.app.name} ${p.app.version} on ${p.nodes.length} virtual nodes (run ${p.runId})${p.python ? ` with ${p.python.executable} (Python ${p.python.version})` : ''}`,
          ),
        onRound: (r) => out.progress(roundLine(r)),
      }),
    );
    const rounds = result.rounds.map((r) => ({ round: r.round, metrics: r.metrics, nodes: r.nodeIds }));
    const last: Readonly<Record<string, number>> = rounds[rounds.length - 1]?.metrics ?? {};
    const document = {
      runId: result.runId,
      app: result.app,
      nodes: result.nodes,
      runConfig: result.runConfig,
      rounds,
      metrics: last,
      seconds: result.seconds,
      ...(result.python && { python: result.python }),
      ...(await writeArtefacts(result.artefacts, o.output ?? result.runId)),
    };
    const render = (d: typeof document) => [
      `${result.error ? 'simulation failed' : ok('simulated')} ${bold(`${d.app.name} ${d.app.version}`)}: ${d.rounds.length} round${d.rounds.length === 1 ? '' : 's'} on ${d.nodes.length} virtual nodes in ${d.seconds.toFixed(1)} s`,
      ...d.rounds.map((r) => `  round ${String(r.round).padStart(3)}  ${formatMetrics(r.metrics)}`),
      ...(d.rounds.length > 0 ? [`final metrics: ${formatMetrics(d.metrics)}`] : []),
      ...(d.artefacts.length > 0 ? [`artefacts in ${d.dir}`, ...d.artefacts.map(formatArtefact)] : []),
    ];
    if (result.error) throw out.failure(document, result.error, render);
    out.result(document, render);
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
}
