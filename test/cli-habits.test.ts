import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliResult, pollenAsync, pollenInProcess, tempDir } from './support/cli.js';
import { sshKeygen, TINY_APP } from './support/federation.js';
import { type InProcessLink, startInProcessLink, writeFederationsFile } from './support/inproc.js';

// Flower's and FLARE's command lines, as their users type them, against a SuperLink in this
// process (real mutual TLS on 127.0.0.1) and a CA folder; the CLI runs in-process.

const t = tempDir('pollen-habits-');
const CONFIG = join(t.dir, 'pollen.toml');
const CA = join(t.dir, 'ca');
let link: InProcessLink;

const cli = (args: string[], cwd = TINY_APP) =>
  pollenInProcess(args, { cwd, env: { POLLEN_CONFIG: CONFIG } });

interface ErrorDoc {
  ok: false;
  error: { code: string; message: string; hint: string; suggestion?: string };
}

/** The one JSON document of a failed --json command, with its exit code checked. */
function failure(r: CliResult, code: string, exit: number): ErrorDoc['error'] {
  const doc = r.json<ErrorDoc>();
  expect(doc.error.code, r.stdout).toBe(code);
  expect(r.code, r.stdout + r.stderr).toBe(exit);
  return doc.error;
}

beforeAll(async () => {
  link = await startInProcessLink('pollen-habits-link-');
  await writeFederationsFile(link, CONFIG, 'hab');
  const init = await cli(['cert', 'init', '-n', 'Habits', '-o', CA, '--key-type', 'ec-p256', '--json']);
  expect(init.code, init.stdout + init.stderr).toBe(0);
}, 60_000);
afterAll(async () => {
  await link?.close();
  t.cleanup();
});

describe("Flower's app folder before the federation", () => {
  it('lists runs with `ls . FED`, `list FED` and no argument alike', async () => {
    for (const args of [['ls', '.', 'hab'], ['list', 'hab'], ['ls', '.'], ['ls']]) {
      const r = await cli([...args, '--json']);
      expect(r.code, `${args.join(' ')}: ${r.stdout}${r.stderr}`).toBe(0);
      expect(r.json()).toMatchObject({ ok: true, superlink: 'hab', federation: 'default' });
    }
    const missing = await cli(['ls', './no-such-app', 'hab', '--json']);
    expect(failure(missing, 'FILE_NOT_FOUND', 4).message).toContain('no-such-app');
    const typo = await cli(['ls', '.', 'hub', '--json']);
    expect(failure(typo, 'FEDERATION_NOT_FOUND', 4)).toMatchObject({
      suggestion: 'hab',
      hint: expect.stringMatching(/^Did you mean hab\? Known SuperLinks: hab/),
    });
  });

  it('refuses a --run-config key the app does not declare before pushing anything, naming its keys', async () => {
    const r = await cli(['run', '.', 'hab', '--run-config', 'num-round=1', '--json']);
    const e = failure(r, 'RUN_CONFIG_UNKNOWN', 2);
    expect(e.message).toBe('The app pollen-test-tiny has no run config "num-round"');
    expect(e.hint).toMatch(/^Did you mean num-rounds\? It declares: num-rounds, size, min-nodes/);
    expect(r.stderr).not.toContain('pushing'); // refused before the upload
    expect((await cli(['ls', '.', 'hab', '--json'])).json<{ runs: unknown[] }>().runs).toEqual([]);
  });

  it('runs with `run . FED`, then shows it (created by the admin as written) and stops it with the app folder first', async () => {
    const started = await cli(['run', '.', 'hab', '--run-config', 'num-rounds=1', '--json']);
    expect(started.code, started.stdout + started.stderr).toBe(0);
    const { runId } = started.json<{ runId: string }>();
    const shown = await cli(['ls', '.', 'hab', '--run-id', runId, '--json']);
    expect(shown.json<{ run: { createdBy: string } }>().run.createdBy).toBe('admin@inproc');
    const text = await cli(['ls', 'hab', '--run-id', runId]);
    expect(text.stdout).toContain('by admin@inproc');
    expect(text.stdout).not.toContain('%40');
    const stopped = await cli(['stop', runId, '.', 'hab', '--json']);
    expect(stopped.code, stopped.stdout + stopped.stderr).toBe(0);
    const log = await cli(['log', runId, '.', 'hab', '--json']);
    expect(log.code, log.stdout + log.stderr).toBe(0);
  }, 60_000);

  it('registers a node key with `supernode register KEY.pub . FED`; an unregistered key is listed as unregistered', async () => {
    const key = sshKeygen(join(t.dir, 'node-key'), 384, 'site-x');
    const reg = await cli(['supernode', 'register', `${key}.pub`, '.', 'hab', '--json']);
    expect(reg.code, reg.stdout + reg.stderr).toBe(0);
    const { nodeId } = reg.json<{ nodeId: string }>();
    const status = async () =>
      (await cli(['supernode', 'list', '.', 'hab', '--json']))
        .json<{ nodes: { nodeId: string; status: string }[] }>()
        .nodes.find((n) => n.nodeId === nodeId)?.status;
    expect(await status()).toBe('registered');
    const un = await cli(['supernode', 'unregister', nodeId, '.', 'hab', '--json']);
    expect(un.code, un.stdout + un.stderr).toBe(0);
    expect(await status()).toBe('unregistered');
    expect((await cli(['supernode', 'ls', 'hab'])).stdout).toMatch(new RegExp(`${nodeId}\\s+unregistered`));
  });
});

describe("FLARE's spellings", () => {
  it('generates a token with -n NAME as with -s SUBJECT, and refuses two different subjects', async () => {
    const r = await cli(['token', 'generate', '-n', 'hospital-1', '--ca_path', CA, '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.json()).toMatchObject({ subject: 'hospital-1', subjectType: 'client' });
    const both = await cli(['token', 'generate', '-n', 'a', '-s', 'b', '-c', CA, '--json']);
    expect(failure(both, 'USAGE', 2).message).toBe('-s b and -n a name two subjects');
    const none = await cli(['token', 'generate', '-c', CA, '--json']);
    expect(failure(none, 'USAGE', 2).hint).toContain('-n hospital-1');
  });

  it('packages a relay with --listening_port as with --listening-port', async () => {
    const out = join(t.dir, 'relay-east');
    const r = await cli([
      'package',
      '-n',
      'relay-east',
      '-e',
      'grpc://server:8002',
      '-t',
      'relay',
      '--listening_port',
      '8010',
      '-o',
      out,
      '--json',
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(readFileSync(join(out, 'startup', 'fed_relay.json'), 'utf8')).toContain('8010');
  });
});

describe('a mistyped command line', () => {
  it('suggests the nearest command, subcommand or option, in text and as one JSON document', async () => {
    const cmd = await cli(['rn', '--json']);
    expect(failure(cmd, 'USAGE', 2)).toMatchObject({
      message: "unknown command 'rn'",
      suggestion: 'pollen run',
      hint: 'Did you mean pollen run? `pollen --help` shows the usage.',
    });
    const sub = await cli(['supernode', 'lst', '--json']);
    expect(failure(sub, 'USAGE', 2)).toMatchObject({
      message: "unknown command 'pollen supernode lst'",
      suggestion: 'pollen supernode list',
    });
    const opt = await cli(['run', '--stram', '--json']);
    expect(failure(opt, 'USAGE', 2).suggestion).toBe('--stream');
    const text = await cli(['supernode', 'lst']);
    expect(text.code).toBe(2);
    expect(text.stderr).toContain('(Did you mean pollen supernode list?)');
    const far = await cli(['completely-unknown', '--json']);
    expect(failure(far, 'USAGE', 2).suggestion).toBeUndefined();
  });

  it('does the same as a real process', async () => {
    const r = await pollenAsync(['tokn', 'generate', '--json']);
    expect(failure(r, 'USAGE', 2).suggestion).toBe('pollen token');
    expect(r.stderr).toContain('Did you mean token?');
  });
});
