/**
 * The participant runtime hook: `pollen start KIT` enrolls the kit, then runs what its type runs
 * (the SuperNode for client kits, the SuperLink for server kits). The commands that own those
 * runtimes register them here, so `start` needs no import of theirs.
 */
import type { EnrollResult } from '../enrollment/enroll-client.js';
import type { KitType, LoadedKit } from '../enrollment/kit.js';
import type { Output } from './output.js';

export interface ParticipantContext {
  kit: LoadedKit;
  enrollment: EnrollResult;
  out: Output;
}

export interface ParticipantOutcome {
  /** `ready`: enrolled and configured, no runtime to run yet; `stopped`: the runtime ran and ended. */
  status: 'ready' | 'stopped';
  detail?: Record<string, unknown>;
}

/** Runs a participant until it stops (SuperNode for clients, SuperLink for servers, …). */
export type ParticipantRunner = (ctx: ParticipantContext) => Promise<ParticipantOutcome>;

const runners = new Map<KitType, ParticipantRunner>();

/** Plug in the runtime of a participant type (the SuperNode / SuperLink modules call this). */
export function registerParticipantRunner(type: KitType, runner: ParticipantRunner): void {
  runners.set(type, runner);
}

/** Start the participant of an enrolled kit; without a registered runtime, report it ready. */
export async function startParticipant(ctx: ParticipantContext): Promise<ParticipantOutcome> {
  const runner = runners.get(ctx.kit.config.type);
  if (runner) return runner(ctx);
  return { status: 'ready' };
}
