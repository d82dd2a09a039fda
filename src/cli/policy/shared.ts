/** What the policy commands share: which file, how to name it, how to colour an action. */
import { resolve } from 'node:path';
import type { LoadedPolicy } from '../../enrollment/policy.js';
import { pc } from '../colors.js';

/** The FILE argument, else POLLEN_ENROLLMENT_POLICY (the hidden --policy option carries it). */
export const policyFile = (file: string | undefined, o: { policy?: string }): string | undefined =>
  file ?? (o.policy || undefined);

/** `built-in`, or the policy file's absolute path. */
export const sourceOf = (l: LoadedPolicy): string =>
  l.source === 'built-in' ? 'built-in' : resolve(l.source);

export const colorAction = (a: string) =>
  a === 'approve' ? pc.green(a) : a === 'reject' ? pc.red(a) : pc.yellow(a);
