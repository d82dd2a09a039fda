import { type Command, Option } from 'commander';
import { action, lazy } from '../command.js';
import type { EnvCheckOptions } from '../env/check.js';

const envCheck = lazy(() => import('../env/check.js'), 'envCheck');

export function registerEnv(program: Command): void {
  const env = program.command('env').description("the site's Python environment for Python apps");
  env
    .command('check [APP_DIR]')
    .description(
      'check that a Python interpreter has what an app requires (as a SuperNode does before a run)',
    )
    .addOption(
      new Option(
        '--python <path>',
        "the interpreter to check, e.g. a virtual environment's bin/python (default: python3 on PATH)",
      ).env('POLLEN_PYTHON'),
    )
    .option('--requirements <file>', 'check a pip requirements file (requirements.txt) instead of an app')
    .addHelpText(
      'after',
      `
APP_DIR is a Python app (its pyproject.toml lists [project] dependencies). Each requirement is
compared with the version installed in the interpreter's environment, read from the
distribution's metadata without importing it; nothing is installed. Exit 0 when every
requirement is met; otherwise APP_REQUIREMENTS_MISSING names what is missing or too old.
Preparing the environment (a virtual environment, a wheelhouse for sites without internet):
docs/python-operators.md.

Examples:
  pollen env check examples/pytorch-mnist --python /opt/pollen-venv/bin/python
  pollen env check --requirements site-1/requirements.txt --json`,
    )
    .action(
      action<Omit<EnvCheckOptions, 'appDir'>>((o, out, [appDir]) =>
        envCheck({ ...o, ...(appDir !== undefined && { appDir }) }, out),
      ),
    );
}
