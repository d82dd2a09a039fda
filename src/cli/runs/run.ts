import { PollenError } from '../../errors.js';
import { rpc } from '../../transport/errors.js';
import { untilSignalOr } from '../command.js';
import { parseConfigPairs } from '../config-pairs.js';
import { type ControlSession, withControl } from '../control-client.js';
import { bold, dim, type Output, ok, type Reported } from '../output.js';
import {
  artefactJson,
  finalError,
  follow,
  formatArtefacts,
  formatRound,
  roundJson,
  runJson,
  statusLine,
} from './format.js';

export interface RunAppOptions {
  /** The app folder (default: the working folder). */
  appDir: string;
  /** A SuperLink connection, or a federation on the default one (target.ts). */
  federation?: string;
  /** The config file (`--config`) and the connection to use (`--superlink`). */
  config?: string;
  superlink?: string;
  /** `k=v` overrides of the app's default run config. */
  runConfig: string[];
  /** Follow the run until it finishes. */
  stream?: boolean;
}

/** `pollen run`: build the app, push it and start a run; with --stream, follow it to the end. */
export async function runApp(o: RunAppOptions, out: Output): Promise<void> {
  // Loaded here: the bundler is only needed by this command.
  const { submitRun } = await import('../../apps/submit.js');
  // Resolve the SuperLink and federation first: a wrong name fails before the build.
  await withControl(o.federation, o, async (s) => {
    // The cheapest call that names the federation: FEDERATION_NOT_FOUND comes before the build.
    await rpc(s.control.listRuns({ limit: 1, federation: s.federation }));
    const { runId, app, hash } = await submitRun({
      control: s.control,
      chunks: s.chunks,
      appDir: o.appDir,
      runConfig: parseConfigPairs(o.runConfig, '--run-config'),
      federation: s.federation,
      onProgress: (e) => out.progress(e.message),
    });
    if (!o.stream) {
      const again = s.arg;
      out.result({ runId, superlink: s.connection.name, federation: s.federation, app, hash }, (d) => [
        `${ok('started')} run ${bold(d.runId)} of ${d.app} on federation ${d.federation} ${dim(`(SuperLink ${d.superlink})`)}`,
        dim(`  follow it: pollen log ${d.runId} ${again} --stream`),
      ]);
      return;
    }
    out.progress(`run ${runId} started; following it (Ctrl-C stops following, not the run)`);
    const following = new AbortController();
    const ended = await untilSignalOr(rpc(follow(s, runId, out, true, following.signal)));
    if ('signal' in ended) {
      following.abort();
      throw detached(out, runId, s);
    }
    const run = ended.value;
    const details = await rpc(s.control.getRunDetails({ runId }));
    const result = {
      run: runJson(details.run ?? run!),
      rounds: details.rounds.map(roundJson),
      artefacts: details.artefacts.map(artefactJson),
    };
    const render = (d: typeof result) => [
      `${bold(`run ${d.run.runId}`)}  ${statusLine(d.run)}`,
      ...d.rounds.map(formatRound),
      ...formatArtefacts(d.run.runId, d.artefacts),
    ];
    const err = finalError(details.run ?? run!);
    if (err) throw out.failure(result, err, render);
    out.result(result, render);
  });
}

/**
 * Ctrl-C while following: the run goes on at the SuperLink. Say so, and how to follow or stop it
 * (with --json, in the one document); CANCELLED, since the command did not see the run end.
 */
function detached(out: Output, runId: string, s: ControlSession): Reported {
  const { federation } = s;
  const commands = {
    follow: `pollen log ${runId} ${s.arg} --stream`,
    stop: `pollen stop ${runId} ${s.arg}`,
  };
  const error = new PollenError('CANCELLED', `Stopped following run ${runId}; the run goes on`, {
    hint: `Follow it again: ${commands.follow}  Stop it: ${commands.stop}`,
  });
  return out.failure({ runId, federation, following: false, ...commands }, error, (d) => [
    `run ${bold(d.runId)} goes on at the SuperLink (only following it stopped)`,
    `  follow it: ${d.follow}`,
    `  stop it:   ${d.stop}`,
  ]);
}
