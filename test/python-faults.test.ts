/**
 * A Python ClientApp that fails, on a real SuperNode and SuperLink with the built-in (TypeScript)
 * FedAvg as the ServerApp: one that raises, one whose process exits and one that hangs past the
 * round's timeout each give the ServerApp a precise error in the run's log, and the node goes on
 * to serve the next run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import 'reflect-metadata';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SuperNode, startSuperNode } from '../src/supernode/supernode.js';
import { type InProcessLink, startInProcessLink } from './support/inproc.js';
import { PYTHON } from './support/python.js';
import { type Admin, runPythonApp, writePythonApp } from './support/python-apps.js';

const dir = mkdtempSync(join(tmpdir(), 'pollen-pyfaults-'));
let l: InProcessLink;
let node: SuperNode;
let admin: Admin;
let app: string;

// What the app does is the run's `mode`.
const CLIENT = `import os, time
from pollen import ClientApp, MetricRecord, RecordDict

app = ClientApp()

@app.train()
def train(msg, context):
    mode = context.run_config.get("mode", "ok")
    if mode == "raise":
        raise RuntimeError("no training data at this site")
    if mode == "exit":
        os._exit(3)
    if mode == "hang":
        time.sleep(120)
    return RecordDict({"arrays": msg.content["arrays"], "metrics": MetricRecord({"num-examples": 1})})
`;

beforeAll(async () => {
  l = await startInProcessLink('pollen-pyfaults-link-');
  node = await startSuperNode({
    superlink: l.superlink.fleetUrl,
    tls: await l.tls('site-0'),
    name: 'site-0',
    workDir: join(dir, 'node'),
    python: PYTHON,
    log: pino({ level: 'silent' }),
    pollIntervalMs: 100,
  });
  await node.ready;
  admin = await l.admin();
  app = writePythonApp(dir, 'faults', {
    dependencies: ['numpy>=1.20'],
    client: CLIENT,
    config: 'round-timeout = 3\nmode = "ok"',
  });
}, 60_000);

afterAll(async () => {
  await node?.close();
  await l?.close();
  rmSync(dir, { recursive: true, force: true });
});

// A long round timeout, except where the test waits for it: a Python app's start (numpy, grpc)
// takes seconds on a busy machine.
const run = (mode: string, roundTimeout = 60) =>
  runPythonApp(admin, app, join(dir, 'build'), { mode, 'round-timeout': roundTimeout });

describe('a Python ClientApp that fails', () => {
  it('raises: the run log names the exception', async () => {
    const { lines } = await run('raise');
    expect(lines.join('\n')).toContain(
      `node ${node.nodeId} train failed: CLIENT_APP_RAISED_EXCEPTION: RuntimeError: no training data at this site`,
    );
  }, 60_000);

  it('exits: the run log says the process ended and how', async () => {
    const { lines } = await run('exit');
    expect(lines.join('\n')).toContain(
      `node ${node.nodeId} train failed: CLIENT_APP_CRASHED: The ClientApp process ended (exit code 3)`,
    );
  }, 60_000);

  it('hangs past the round timeout: the round ends without it, and the node serves the next run', async () => {
    const hung = await run('hang', 3);
    const text = hung.lines.join('\n');
    expect(hung.final, text).toBe('finished:failed');
    expect(text).toContain(`node ${node.nodeId} train failed: No reply within 3 s`);
    expect(text).toContain(
      'run failed: RUN_FAILED: Round 1: no node returned a model (1 of 1 failed: NO_REPLY)',
    );
    const ok = await run('ok');
    expect(ok.final, ok.lines.join('\n')).toBe('finished:completed');
  }, 90_000);
});
