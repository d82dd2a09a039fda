import { Message } from '../../src/sdk/message.js';
import { RecordDict } from '../../src/sdk/records.js';
import type { Link } from '../../src/superlink/link.js';
import type { InstructionInput, LinkState } from '../../src/superlink/state.js';
import { messageToWire } from '../../src/transport/wire.js';

/**
 * A run just created (pending: it is not running yet) in `default`, or as `by` would have
 * started it (as StartRun records it); its id.
 */
export async function pendingRun(
  state: Pick<LinkState, 'createRun'>,
  fabName = 'test',
  by?: { subject: string; org: string; federation?: string },
): Promise<string> {
  const run = await state.createRun({
    fabHash: `sha256:${'0'.repeat(64)}`,
    fabName,
    fabVersion: '1.0.0',
    runConfig: {},
    federation: by?.federation ?? 'default',
    createdBy: by?.subject ?? 'test',
    ...(by && { createdBySubject: by.subject, org: by.org }),
  });
  return run.runId;
}

/** A run that is running (no ServerApp behind it: the test plays its part); its id. */
export async function runningRun(
  state: Pick<LinkState, 'createRun' | 'transitionRun'>,
  fabName = 'test',
): Promise<string> {
  const runId = await pendingRun(state, fabName);
  await state.transitionRun(runId, 'starting');
  await state.transitionRun(runId, 'running');
  return runId;
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

/** Push a `train` instruction (empty content) of `runId` to `dstNodeId`, as a ServerApp would; its id. */
export async function pushTrain(
  link: Link,
  runId: string,
  dstNodeId: string,
  ttlSeconds = 60,
): Promise<string> {
  const message = Message.create({
    content: new RecordDict(),
    dstNodeId,
    messageType: 'train',
    runId,
    ttlSeconds,
  });
  const [id] = await link.pushInstructions(runId, [messageToWire(message).wire]);
  return id!;
}
