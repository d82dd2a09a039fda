import type { Command } from 'commander';
import { APP_TEMPLATES, DEFAULT_TEMPLATE } from '../../apps/new-app.js';
import { action, lazy } from '../command.js';

const newApp = lazy(() => import('../new/new.js'), 'newApp');

const templates = Object.entries(APP_TEMPLATES)
  .map(([id, t]) => `  ${id.padEnd(8)} ${t.description}`)
  .join('\n');

export function registerNew(program: Command): void {
  program
    .command('new <NAME>')
    .description('make a new app folder NAME from a template (a ServerApp, a ClientApp, run config)')
    .option('-t, --template <id>', 'the template', DEFAULT_TEMPLATE)
    .addHelpText(
      'after',
      `
Templates:
${templates}

A TypeScript app depends on the Pollen that made it (a file: link to its folder), so npm install
in the app downloads nothing and the app gets this Pollen's SDK, never the unrelated package called
pollen on the npm registry. A Python app (numpy, pytorch) is a pyproject.toml folder: nothing to
install, the SuperNode puts Pollen's Python SDK on the app's path (docs/python.md). The folder
must not exist yet, or be empty.

Examples:
  pollen new my-app
  cd my-app && npm install && pollen simulate .
  pollen new my-model --template pytorch
  cd my-model && pollen env check . && pollen simulate .`,
    )
    .action(action<{ template: string }>((o, out, [name]) => newApp({ ...o, name: name! }, out)));
}
