/**
 * Run the app in one process: N simulated nodes on an InMemoryGrid, the run config from
 * package.json (override with KEY=VALUE arguments, e.g. `num-rounds=5 partitioning=non-iid`).
 * Usage: npm run simulate -- [--nodes N] [KEY=VALUE ...]
 */
import { readFileSync } from 'node:fs';
import { createContext, InMemoryGrid, SERVER_NODE_ID, type UserConfigValue } from 'pollen/sdk';
import clientApp from './src/client.js';
import serverApp from './src/server.js';

const pkg = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8')) as {
  pollen: { config: Record<string, UserConfigValue> };
};
const runConfig = { ...pkg.pollen.config };
let numNodes = 3;
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const arg = args[i] as string;
  if (arg === '--nodes') numNodes = Number(args[++i]);
  else {
    const [key, value = ''] = arg.split('=', 2) as [string, string?];
    const n = Number(value);
    runConfig[key] =
      value === 'true' ? true : value === 'false' ? false : value !== '' && Number.isFinite(n) ? n : value;
  }
}

const nodes = Object.fromEntries(
  Array.from({ length: numNodes }, (_, p) => [
    String(p + 1),
    { app: clientApp, nodeConfig: { 'partition-id': p, 'num-partitions': numNodes } },
  ]),
);
const started = performance.now();
const runId = 'simulation';
await serverApp.run(
  new InMemoryGrid({ runId, nodes, runConfig }),
  createContext({ runId, nodeId: SERVER_NODE_ID, runConfig }),
);
process.stderr.write(`total ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
