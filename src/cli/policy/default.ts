import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { DEFAULT_POLICY_YAML } from '../../enrollment/policy.js';
import { PollenError } from '../../errors.js';
import { writeFileAtomic } from '../../util/files.js';
import { pc } from '../colors.js';
import type { Output } from '../output.js';

export interface PolicyDefaultOptions {
  /** Write the policy to this file instead of printing it. */
  output?: string;
  force?: boolean;
}

/** `pollen policy default`: the built-in policy, printed or written as a starting point. */
export async function policyDefault(f: PolicyDefaultOptions, out: Output): Promise<void> {
  if (f.output) {
    if (!f.force && existsSync(f.output))
      throw new PollenError('FILE_EXISTS', `Already exists: ${f.output}`, {
        hint: 'Pass --force to overwrite.',
      });
    writeFileAtomic(f.output, DEFAULT_POLICY_YAML, 0o644);
  }
  out.result({ yaml: DEFAULT_POLICY_YAML, output: f.output ? resolve(f.output) : null }, (d) =>
    d.output
      ? `${pc.green('✓')} default policy written to ${d.output}; edit it, then \`pollen policy check ${f.output}\``
      : d.yaml.trimEnd(),
  );
}
