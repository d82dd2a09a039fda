import type { InstructionInput, LinkState } from '../../src/superlink/state.js';

/** A run that is running (no ServerApp behind it: the test plays its part); its id. */
export async function runningRun(
  state: Pick<LinkState, 'createRun' | 'transitionRun'>,
  fabName = 'test',
): Promise<string> {
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

/** An instruction for `dstNodeId` (a `train` message of four bytes that lives a minute). */
export function instruction(
  messageId: string,
  dstNodeId: string,
  o: Partial<InstructionInput> = {},
): InstructionInput {
  return {
    messageId,
    dstNodeId,
    groupId: '',
    messageType: 'train',
    createdAt: Date.now(),
    ttlMs: 60_000,
    payload: new Uint8Array(4),
    chunkIds: [],
    ...o,
  };
}
