import { relative } from 'node:path';
import { createApp } from '../../apps/new-app.js';
import { bold, dim, type Output, ok } from '../output.js';

export interface NewOptions {
  /** The app's name: its folder (made in the working folder) and npm package name. */
  name: string;
  /** A template id (`pollen new --help` lists them). */
  template: string;
}

/** `pollen new`: a new app folder from a template, and what to run next. */
export async function newApp(o: NewOptions, out: Output): Promise<void> {
  const app = createApp({ name: o.name, template: o.template, parentDir: process.cwd() });
  const folder = relative(process.cwd(), app.dir) || '.';
  const next = [
    `cd ${folder}`,
    // A Python app needs no install step: the SuperNode puts this Pollen's SDK on its path.
    app.language === 'python' ? 'pollen env check .' : 'npm install',
    'pollen simulate .',
    'pollen run . FEDERATION --stream',
  ];
  out.result({ ...app, next }, (d) => [
    `${ok('created')} ${bold(d.name)} from the ${d.template} template in ${folder}/`,
    ...d.files.map((f) => dim(`  ${f}`)),
    'Next:',
    ...d.next.map((c) => `  ${c}`),
  ]);
}
