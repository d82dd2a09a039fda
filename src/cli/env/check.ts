import { resolve } from 'node:path';
import { pythonRequirements, readRequirementsFile } from '../../apps/build-python.js';
import {
  checkEnvironment,
  defaultPython,
  requirementsMissing,
  withSdkRequirements,
} from '../../apps/python-env.js';
import { PollenError } from '../../errors.js';
import { bold, dim, type Output, ok } from '../output.js';

export interface EnvCheckOptions {
  /** A Python app folder (pyproject.toml); default the working folder. */
  appDir?: string;
  /** A pip requirements file instead of an app (a kit's requirements.txt). */
  requirements?: string;
  /** The interpreter to check (default: POLLEN_PYTHON, else python3 on PATH). */
  python?: string;
}

/**
 * `pollen env check`: whether an interpreter has what an app (or a requirements file) needs, read
 * from installed metadata as a SuperNode reads it before it accepts a run.
 */
export async function envCheck(o: EnvCheckOptions, out: Output): Promise<void> {
  if (o.appDir !== undefined && o.requirements !== undefined)
    throw new PollenError('USAGE', 'Give an app folder or --requirements FILE, not both');
  const source = o.requirements ?? resolve(o.appDir ?? '.');
  const requirements = o.requirements ? readRequirementsFile(o.requirements) : pythonRequirements(source);
  const python = o.python ?? defaultPython();
  out.progress(
    `checking ${withSdkRequirements(requirements).length} requirements (the app's and the Python SDK's) with ${python}`,
  );
  const check = await checkEnvironment(python, requirements);
  const document = {
    source,
    python: check.python,
    executable: check.executable,
    pythonVersion: check.pythonVersion,
    ok: check.ok,
    requirements: check.results,
  };
  const render = (d: typeof document) => [
    `${d.ok ? ok('ready') : 'not ready'}: ${bold(d.executable)} (Python ${d.pythonVersion}) for ${d.source}`,
    ...d.requirements.map(
      (r) =>
        `  ${r.ok ? 'ok     ' : 'missing'}  ${r.requirement.padEnd(28)} ${r.found === null ? dim('not installed') : `found ${r.found}`}${r.note && r.found !== null ? dim(`  ${r.note}`) : ''}`,
    ),
    ...(d.requirements.length === 0 ? [dim('  (no requirements declared)')] : []),
  ];
  if (!check.ok) throw out.failure(document, requirementsMissing(check, source), render);
  out.result(document, render);
}
