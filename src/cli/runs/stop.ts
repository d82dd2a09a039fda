import { rpc } from '../../transport/errors.js';
import { withControl } from '../control-client.js';
import type { Output } from '../output.js';
import { runJson, statusText } from './format.js';

export interface StopRunOptions {
  runId: string;
  federation?: string;
  config?: string;
}

/** `pollen stop`: stop a run; its ServerApp ends and the nodes stop its ClientApps. */
export async function stopRun(o: StopRunOptions, out: Output): Promise<void> {
  await withControl(o.federation, o, async (s) => {
    const { run } = await rpc(s.control.stopRun({ runId: o.runId }));
    out.result({ run: runJson(run!) }, (d) => `run ${d.run.runId} ${statusText(d.run)}`);
  });
}
