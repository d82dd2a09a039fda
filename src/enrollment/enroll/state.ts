import { rmSync } from 'node:fs';
import { z } from 'zod';
import { writeFileAtomic } from '../../util/files.js';
import type { LoadedKit } from '../kit.js';
import { readIf } from './context.js';

// startup/enrollment_state.json: the request a site waits on, so that a restarted
// `pollen start` resumes it with the same key.

const stateSchema = z.object({
  version: z.literal(1),
  name: z.string(),
  type: z.string(),
  keyId: z.string(),
  csr: z.string(),
  certServiceUrl: z.string(),
  rootCaFingerprint: z.string(),
  requestId: z.string().nullable(),
  pollUrl: z.string().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type EnrollmentState = z.infer<typeof stateSchema>;

export function readEnrollmentState(kit: LoadedKit): EnrollmentState | null {
  const text = readIf(kit.paths.state);
  if (text === null) return null;
  try {
    const parsed = stateSchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

export function writeState(kit: LoadedKit, state: EnrollmentState): void {
  writeFileAtomic(kit.paths.state, `${JSON.stringify(state, null, 2)}\n`, 0o600);
}

export function clearState(kit: LoadedKit): void {
  rmSync(kit.paths.state, { force: true });
}
