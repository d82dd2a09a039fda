import { runEnrollmentDemo } from '../../demo/auto-scale.js';
import { PollenError } from '../../errors.js';
import { bold, type Output, ok } from '../output.js';
import { demoWorkspace, narrator, shutDownLine, tidyWorkspace } from './narration.js';

export interface DemoEnrollmentOptions {
  sites: string;
  workspace?: string;
  keep?: boolean;
}

/** `pollen demo enrollment`: the auto-scale enrollment workflow on this machine, narrated. */
export async function demoEnrollment(o: DemoEnrollmentOptions, out: Output): Promise<void> {
  const sites = Number(o.sites);
  if (!Number.isInteger(sites) || sites < 1 || sites > 50)
    throw new PollenError('INVALID_ARGUMENT', '--sites must be a whole number from 1 to 50');
  const workspace = demoWorkspace(o.workspace);
  const { say, step, line } = narrator(out);
  say(`${bold('Pollen')} auto-scale enrollment demo — workspace ${workspace}`);
  const summary = await runEnrollmentDemo({ workspace, sites, keep: Boolean(o.keep) }, { step, line });
  const removed = tidyWorkspace(workspace, o);
  out.result({ ...summary, workspaceRemoved: removed }, (s) => [
    '',
    `${ok('✓')} ${s.enrolled.length} sites enrolled (${s.enrolled.filter((e) => e.verified).length} chains verified), ` +
      `${s.pendingApproved.length} after approval, ${s.refused.length} intruder refused, in ${s.seconds}s`,
    s.keptRunning
      ? `The Certificate Service keeps running at ${s.certServiceUrl} (pid ${s.certServicePid}); workspace ${s.workspace}`
      : shutDownLine(s),
  ]);
}
