/**
 * Which modules a `pollen` process loads, for the start-up tests: a `node --import` preload whose
 * resolve hook (it runs on its own thread) appends every ES module's URL to the file named by
 * POLLEN_TRACE_ESM and which, at exit, writes the CommonJS modules loaded (the bundle's externals
 * are required) to POLLEN_TRACE_CJS when that is set.
 */
const HOOK = `import { appendFileSync } from 'node:fs';
export async function resolve(s, c, next) {
  const r = await next(s, c);
  appendFileSync(process.env.POLLEN_TRACE_ESM, r.url + '\\n');
  return r;
}`;

const PRELOAD = `import { createRequire, register } from 'node:module';
import { writeFileSync } from 'node:fs';
register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(HOOK)}));
if (process.env.POLLEN_TRACE_CJS)
  process.on('exit', () =>
    writeFileSync(process.env.POLLEN_TRACE_CJS, Object.keys(createRequire(process.execPath).cache).join('\\n')));`;

/** Node's arguments that load the tracer: put them before the script. */
export const TRACE_ARGS = ['--import', `data:text/javascript,${encodeURIComponent(PRELOAD)}`];
