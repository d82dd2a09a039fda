import { rpc } from '../../transport/errors.js';
import { withControl } from '../control-client.js';
import { bold, dim, type Output } from '../output.js';
import {
  artefactJson,
  formatArtefacts,
  formatRound,
  roundJson,
  runJson,
  statusLine,
  statusText,
} from './format.js';

export interface ListRunsOptions {
  federation?: string;
  config?: string;
  /** Show this run in detail instead of listing runs. */
  runId?: string;
}

/** `pollen list`: the runs of a federation, or one run with its per-round metrics and artefacts. */
export async function listRuns(o: ListRunsOptions, out: Output): Promise<void> {
  await withControl(o.federation, o, async (s) => {
    if (o.runId) {
      const d = await rpc(s.control.getRunDetails({ runId: o.runId }));
      const result = {
        run: runJson(d.run!),
        rounds: d.rounds.map(roundJson),
        artefacts: d.artefacts.map(artefactJson),
      };
      out.result(result, (r) => [
        `${bold(`run ${r.run.runId}`)}  ${statusLine(r.run)}`,
        `  app ${r.run.app?.name} ${r.run.app?.version}  ${dim(r.run.app?.hash ?? '')}`,
        `  created ${r.run.createdAt} by ${r.run.createdBy}`,
        ...(r.rounds.length ? r.rounds.map(formatRound) : [dim('  no rounds reported yet')]),
        ...formatArtefacts(r.run.runId, r.artefacts),
      ]);
      return;
    }
    const { runs } = await rpc(s.control.listRuns({ limit: 100, federation: s.federation }));
    const list = runs.map(runJson);
    out.result({ superlink: s.connection.name, federation: s.federation, runs: list }, (d) =>
      d.runs.length === 0
        ? 'no runs yet: start one with pollen run APP_DIR'
        : d.runs.map(
            (r) => `${r.runId}  ${statusText(r).padEnd(18)} ${r.app?.name ?? ''}  ${dim(r.createdAt)}`,
          ),
    );
  });
}
