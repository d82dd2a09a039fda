/**
 * Startup kits (`pollen package`): the folder a participant runs from. Like NVIDIA FLARE's
 * `lighter/` provisioning, a kit is made by a list of builders, one per concern (folders,
 * participant config, scripts, enrollment settings, local defaults, readme, signed manifest);
 * each adds files to a plan, and the plan is written to disk at the end, atomically per file.
 *
 * A kit meant for distribution never holds a private key: the site makes its own at first start
 * (auto-enrollment) or copies the certificate and key it was given into startup/ (manual).
 */
import { resolve } from 'node:path';
import { PollenError } from '../errors.js';
import { enrollmentBuilder } from './kit/builders/enrollment.js';
import { localDefaultsBuilder } from './kit/builders/local-defaults.js';
import { participantConfigBuilder } from './kit/builders/participant-config.js';
import { readmeBuilder } from './kit/builders/readme.js';
import { requirementsBuilder } from './kit/builders/requirements.js';
import { scriptBuilder } from './kit/builders/scripts.js';
import { workspaceBuilder } from './kit/builders/workspace.js';
import { type KitBuilder, KitPlan } from './kit/plan.js';
import type { KitSpec } from './kit/spec.js';

// The kit's public surface: its parts live in kit/ (vocabulary, endpoint, spec, plan, one file per
// builder, write, load); this file puts them in order.
export type { EnrollmentConfig } from './kit/builders/enrollment.js';
export { localDefaultsBuilder } from './kit/builders/local-defaults.js';
export type { KitConfig } from './kit/builders/participant-config.js';
export { participantConfigBuilder } from './kit/builders/participant-config.js';
export { readmeBuilder } from './kit/builders/readme.js';
export { scriptBuilder, shellQuote } from './kit/builders/scripts.js';
export { signingBuilder } from './kit/builders/signing.js';
export { type Endpoint, formatEndpoint, parseEndpoint } from './kit/endpoint.js';
export { type LoadedKit, loadKit } from './kit/load.js';
export { type KitBuilder, type KitFile, KitPlan } from './kit/plan.js';
export {
  defaultRuntime,
  type KitSpec,
  type KitSpecInput,
  type PollenRuntime,
  resolveKitSpec,
} from './kit/spec.js';
export * from './kit/vocabulary.js';
export { findPrivateKeys, type WriteKitOptions, writeKit } from './kit/write.js';
export { enrollmentBuilder, workspaceBuilder };

/** The builders of an unsigned kit, in order; `signingBuilder` (kit/builders/signing.ts) comes last. */
export const DEFAULT_BUILDERS: readonly KitBuilder[] = [
  workspaceBuilder,
  participantConfigBuilder,
  scriptBuilder,
  requirementsBuilder,
  enrollmentBuilder,
  localDefaultsBuilder,
  readmeBuilder,
];

export async function planKit(
  spec: KitSpec,
  builders: readonly KitBuilder[] = DEFAULT_BUILDERS,
): Promise<KitPlan> {
  const plan = new KitPlan();
  for (const b of builders) await b.build(spec, plan);
  return plan;
}

/** The kit folder for `-o DIR` / `-w WORKSPACE` (default `./NAME`). */
export function kitFolder(name: string, opts: { output?: string; workspace?: string; cwd?: string }): string {
  if (opts.output !== undefined && opts.workspace !== undefined)
    throw new PollenError('USAGE', 'Give either -o/--output or -w/--workspace, not both');
  const cwd = opts.cwd ?? process.cwd();
  if (opts.output !== undefined) return resolve(cwd, opts.output);
  if (opts.workspace !== undefined) return resolve(cwd, opts.workspace, name);
  return resolve(cwd, name);
}
