import { readFileSync } from 'node:fs';
import { readRequirementsFile } from '../../apps/build-python.js';
import { PYTHON_ENV_SCRIPT, pythonEnvFiles } from '../../deploy/python-env.js';
import type { Output } from '../output.js';
import { type DeployOutputOptions, writeDeployFiles } from './write.js';

export interface DeployPythonEnvOptions extends DeployOutputOptions {
  requirements: string;
  wheelhouse?: string;
  venv: string;
}

/** `pollen deploy python-env`: the script that makes a site's virtual environment, and its requirements. */
export async function deployPythonEnv(o: DeployPythonEnvOptions, out: Output): Promise<void> {
  // Read as the SuperNode reads it: a file it could not check is refused now, not at the site.
  readRequirementsFile(o.requirements);
  const files = pythonEnvFiles({
    requirements: readFileSync(o.requirements, 'utf8'),
    venv: o.venv,
    ...(o.wheelhouse !== undefined && { wheelhouse: o.wheelhouse }),
  });
  writeDeployFiles('python-env', o, files, out, [
    `run: sh ${PYTHON_ENV_SCRIPT}${o.wheelhouse ? ` (with the wheelhouse ${o.wheelhouse} beside it)` : ''}`,
  ]);
}
