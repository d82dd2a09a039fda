import type { LinkState } from '../../src/superlink/state.js';

/** A run that is running (no ServerApp behind it: the test plays its part); its id. */
export async function runningRun(state: LinkState, fabName = 'test'): Promise<string> {
  const run = await state.createRun({
    fabHash: `sha256:${'0'.repeat(64)}`,
    fabName,
    fabVersion: '1.0.0',
    runConfig: {},
    federation: 'default',
    createdBy: 'test',
  });
  await state.transitionRun(run.runId, 'starting');
  await state.transitionRun(run.runId, 'running');
  return run.runId;
}
