import type { Run } from '../../gen/pollen/v1/records_pb.js';
import { fromConnectError } from '../../transport/errors.js';
import { withControl } from '../control-client.js';
import { type Output, Reported } from '../output.js';
import { finalError, runJson, runLog } from './format.js';

export interface LogRunOptions {
  runId: string;
  federation?: string;
  config?: string;
  /** Keep following until the run finishes. */
  stream?: boolean;
}

/** `pollen log`: a run's log lines as they come (text), or in one document (--json). */
export async function logRun(o: LogRunOptions, out: Output): Promise<void> {
  const { runId } = o;
  await withControl(o.federation, o, async (s) => {
    try {
      const lines: { seq: number; stream: string; text: string }[] = [];
      let run: Run | undefined;
      for await (const msg of runLog(s, runId, Boolean(o.stream))) {
        for (const l of msg.lines) {
          if (out.json) lines.push({ seq: Number(l.seq), stream: l.stream, text: l.text });
          else out.line(l.text);
        }
        if (msg.run) run = msg.run;
      }
      const result = { runId, lines, run: run ? runJson(run) : null };
      const err = o.stream && run ? finalError(run) : undefined;
      if (err) throw out.failure(result, err, () => []);
      if (out.json) out.result(result, () => []);
    } catch (e) {
      if (e instanceof Reported) throw e;
      throw fromConnectError(e);
    }
  });
}
