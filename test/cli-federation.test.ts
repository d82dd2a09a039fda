/**
 * `pollen federation create|list|show|invite|accept|members|remove|revoke-invitation` and
 * `pollen supernode register KEY.pub FEDERATION`, in-process against a SuperLink in this process
 * (real mutual TLS on 127.0.0.1): the admin's certificate creates and invites; service accounts
 * (their secrets in POLLEN_TOKEN) play the people invited, so an invitation bound to one identity
 * is refused to another. Every failure carries the server's code, a hint and the exit code, with
 * --json one document.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliResult, pollenInProcess, tempDir } from './support/cli.js';
import { sshKeygen, TINY_APP } from './support/federation.js';
import { type InProcessLink, startInProcessLink, writeFederationsFile } from './support/inproc.js';

const t = tempDir('pollen-fed-cli-');
const CONFIG = join(t.dir, 'pollen.toml');
let link: InProcessLink;
/** Service-account secrets: the identities invited. */
const secrets: Record<string, string> = {};

const cli = (args: string[], as?: string) =>
  pollenInProcess(args, { env: { POLLEN_CONFIG: CONFIG, ...(as && { POLLEN_TOKEN: secrets[as] }) } });

function ok(r: CliResult): CliResult {
  expect(r.code, r.stdout + r.stderr).toBe(0);
  return r;
}

/** The error of a failed --json command (one document on stdout), its exit code checked. */
function failure(r: CliResult, code: string, exit: number) {
  const doc = r.json<{ ok: false; error: { code: string; message: string; hint: string } }>();
  expect(doc.error.code, r.stdout).toBe(code);
  expect(r.code).toBe(exit);
  expect(doc.error.hint.length).toBeGreaterThan(10);
  return doc.error;
}

interface InviteDoc {
  invitation: {
    id: string;
    federation: string;
    subject: string;
    role: string;
    status: string;
    expiresAt: string;
  };
  code: string;
  invitee: string[];
}

async function invite(subject: string, role = 'member', ...more: string[]): Promise<InviteDoc> {
  return ok(
    await cli(['federation', 'invite', 'study', '--subject', subject, '--role', role, ...more, '--json']),
  ).json();
}

beforeAll(async () => {
  link = await startInProcessLink('pollen-fed-cli-link-');
  await writeFederationsFile(link, CONFIG, 'lab');
  for (const name of ['alice', 'bob', 'carol']) {
    const r = ok(await cli(['service-account', 'create', name, '-r', 'member', '--json']));
    secrets[name] = r.json<{ secret: string }>().secret;
  }
}, 60_000);
afterAll(async () => {
  await link?.close();
  t.cleanup();
});

describe('pollen federation', () => {
  it('creates a federation (the creator its project admin) and lists it beside default', async () => {
    const made = ok(
      await cli([
        'federation',
        'create',
        'study',
        '--description',
        'Oncology 2027',
        '--node-org',
        'hospital-a',
        '--json',
      ]),
    );
    expect(made.json()).toMatchObject({
      ok: true,
      superlink: 'lab',
      federation: {
        name: 'study',
        description: 'Oncology 2027',
        nodeOrgs: ['hospital-a'],
        myRole: 'project_admin',
        members: 1,
      },
    });
    const again = await cli(['federation', 'create', 'study', '--json']);
    failure(again, 'FEDERATION_EXISTS', 6);

    const list = ok(await cli(['federation', 'list', '--json']));
    expect(list.json<{ federations: { name: string }[] }>().federations.map((f) => f.name)).toEqual(
      expect.arrayContaining(['default', 'study']),
    );
    // The connections it listed before have their own command now: said on stderr, not in the document.
    expect(list.stderr).toContain('pollen config superlink list');
    const text = ok(await cli(['federation', 'ls']));
    expect(text.stdout).toMatch(/study\s+project_admin\s+1 member\(s\)/);
  });

  it('invites one identity: the code once, with what the invitee runs; refuses another identity', async () => {
    const inv = await invite('service_account:alice');
    expect(inv.invitation).toMatchObject({
      federation: 'study',
      subject: 'service_account:alice',
      role: 'member',
      status: 'pending',
    });
    expect(inv.code).toMatch(/^pollen_inv_/);
    expect(inv.invitee).toEqual([
      expect.stringMatching(
        /^pollen login --address 127\.0\.0\.1:\d+ --root-fingerprint sha256:[0-9a-f]{64}$/,
      ),
      `pollen federation accept ${inv.code}`,
    ]);
    // Expiry about 7 days out by default.
    const days = (Date.parse(inv.invitation.expiresAt) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(6.9);
    expect(days).toBeLessThanOrEqual(7);

    // Not a member yet: alice learns nothing of the federation.
    const unseen = await cli(['federation', 'show', 'study', '--json'], 'alice');
    expect(failure(unseen, 'FEDERATION_NOT_FOUND', 4).message).toBe(
      'No federation "study" that you belong to on SuperLink "lab"',
    );
    const mine = ok(await cli(['federation', 'list', '--json'], 'alice'));
    expect(mine.json<{ federations: { name: string }[] }>().federations.map((f) => f.name)).not.toContain(
      'study',
    );

    failure(await cli(['federation', 'accept', inv.code, '--json'], 'bob'), 'INVITATION_WRONG_IDENTITY', 5);
    const joined = ok(await cli(['federation', 'accept', inv.code, '--json'], 'alice'));
    expect(joined.json()).toMatchObject({
      federation: { name: 'study', myRole: 'member' },
      member: { subject: 'service_account:alice', role: 'member' },
    });
    failure(await cli(['federation', 'accept', inv.code, '--json'], 'alice'), 'INVITATION_USED', 6);
    ok(await cli(['federation', 'show', 'study', '--json'], 'alice'));
  });

  it('prints the code as text with a warning on stderr; refuses an invitation of nobody, or of two', async () => {
    const text = ok(
      await cli(['federation', 'invite', 'study', '--email', 'dora@uni-a.example', '--role', 'member']),
    );
    expect(text.stdout).toMatch(/^ {2}pollen_inv_\S+$/m);
    expect(text.stdout).toContain('pollen federation accept pollen_inv_');
    expect(text.stderr).toContain('shown only now');
    failure(await cli(['federation', 'invite', 'study', '--role', 'member', '--json']), 'USAGE', 2);
    const both = ['--email', 'e@x.example', '--subject', 'user:e', '--role', 'member', '--json'];
    failure(await cli(['federation', 'invite', 'study', ...both]), 'USAGE', 2);
    failure(
      await cli([
        'federation',
        'invite',
        'study',
        '--subject',
        'user:e',
        '--role',
        'member',
        '--expires',
        'never',
        '--json',
      ]),
      'INVALID_ARGUMENT',
      2,
    );
    failure(
      await cli(['federation', 'invite', 'nope', '--subject', 'user:e', '--role', 'member', '--json']),
      'FEDERATION_NOT_FOUND',
      4,
    );
    // A member may not invite.
    failure(
      await cli(
        ['federation', 'invite', 'study', '--subject', 'user:e', '--role', 'member', '--json'],
        'alice',
      ),
      'RIGHT_MISSING',
      5,
    );
  });

  it('revokes an invitation until it is used', async () => {
    const inv = await invite('service_account:carol', 'member', '--expires', '2d');
    const revoked = ok(await cli(['federation', 'revoke-invitation', inv.invitation.id, '--json']));
    expect(revoked.json()).toMatchObject({ invitation: { id: inv.invitation.id, status: 'revoked' } });
    failure(await cli(['federation', 'accept', inv.code, '--json'], 'carol'), 'INVITATION_REVOKED', 6);
    failure(
      await cli(['federation', 'revoke-invitation', 'no-such-id', '--json']),
      'INVITATION_NOT_FOUND',
      4,
    );
  });

  it('registers a node into the federation; show gives members, nodes, runs and pending invitations', async () => {
    const key = sshKeygen(join(t.dir, 'site-1'), 256, 'site-1');
    const reg = ok(await cli(['supernode', 'register', `${key}.pub`, 'study', '--json']));
    const { nodeId } = reg.json<{ nodeId: string; superlink: string; federation: string }>();
    expect(reg.json()).toMatchObject({ superlink: 'lab', federation: 'study' });

    const pending = await invite('service_account:bob');
    const show = ok(await cli(['federation', 'show', 'study', '--json']));
    const d = show.json<{
      federation: { name: string; nodes: number };
      members: { subject: string; role: string }[];
      nodes: { nodeId: string; status: string; federations: string[] }[];
      runs: unknown[];
      invitations: { id: string }[];
    }>();
    expect(d.members.map((m) => [m.subject, m.role])).toEqual(
      expect.arrayContaining([['service_account:alice', 'member']]),
    );
    expect(d.nodes).toEqual([expect.objectContaining({ nodeId, status: 'registered' })]);
    expect(d.runs).toEqual([]);
    expect(d.invitations.map((i) => i.id)).toContain(pending.invitation.id);

    // Out of the federation and back in, by its id.
    const out = ok(await cli(['federation', 'remove-node', 'study', nodeId, '--json']));
    expect(out.json()).toMatchObject({ federation: 'study', nodeId, serves: false });
    const gone = ok(await cli(['federation', 'show', 'study', '--json']));
    expect(gone.json<{ nodes: unknown[] }>().nodes).toEqual([]);
    failure(await cli(['federation', 'remove-node', 'study', nodeId, '--json']), 'NODE_NOT_IN_FEDERATION', 5);
    ok(await cli(['federation', 'add-node', 'study', nodeId, '--json']));
    failure(await cli(['federation', 'add-node', 'study', '0000000000000000', '--json']), 'NODE_UNKNOWN', 4);

    const text = ok(await cli(['federation', 'show', 'study']));
    for (const heading of [
      /^federation study on lab/m,
      /^members \(\d+\)/m,
      /^nodes \(1, 0 online\)/m,
      /^runs \(0 most recent\)/m,
      /^pending invitations/m,
    ])
      expect(text.stdout).toMatch(heading);
    expect(text.stdout).toContain(nodeId);

    // A member does not see the invitations.
    const asMember = ok(await cli(['federation', 'show', 'study', '--json'], 'alice'));
    expect(asMember.json<{ invitations: unknown[] }>().invitations).toEqual([]);
    failure(await cli(['federation', 'show', 'study', '--runs', 'many', '--json']), 'INVALID_ARGUMENT', 2);
  });

  it('lists members and removes one, who then sees the federation no more', async () => {
    const members = ok(await cli(['federation', 'members', 'study', '--json']));
    expect(members.json<{ members: { subject: string }[] }>().members.map((m) => m.subject)).toContain(
      'service_account:alice',
    );
    const removed = ok(await cli(['federation', 'remove', 'study', 'service_account:alice', '--json']));
    expect(removed.json()).toMatchObject({ federation: 'study', removed: 'service_account:alice' });
    failure(await cli(['federation', 'show', 'study', '--json'], 'alice'), 'FEDERATION_NOT_FOUND', 4);
    failure(await cli(['federation', 'members', 'default', '--json']), 'FEDERATION_DEFAULT_IMPLICIT', 3);
  });

  it('runs, node lists and run lists take a federation last; a name that is neither says so', async () => {
    const runs = ok(await cli(['list', 'study', '--json']));
    expect(runs.json()).toMatchObject({ superlink: 'lab', federation: 'study', runs: [] });
    const nodes = ok(await cli(['supernode', 'list', 'study', '--json']));
    expect(nodes.json<{ nodes: { federations: string[] }[] }>().nodes).toEqual([
      expect.objectContaining({ federations: ['study'] }),
    ]);
    expect(ok(await cli(['supernode', 'list'])).stdout).toContain('also serves study');
    const typo = failure(await cli(['list', 'lbb', '--json']), 'FEDERATION_NOT_FOUND', 4);
    expect(typo).toMatchObject({ suggestion: 'lab', hint: expect.stringContaining('Did you mean lab?') });
    const elsewhere = await cli(['list', 'study', '--superlink', 'nowhere', '--json']);
    expect(failure(elsewhere, 'SUPERLINK_NOT_FOUND', 4).hint).toContain('pollen config superlink list');
  });

  it('an entry that names a federation starts its runs there; show lists them in its run history', async () => {
    const admin = await link.adminCert();
    const add = ok(
      await cli([
        ...['config', 'superlink', 'add', 'study-lab', '--address', new URL(link.superlink.controlUrl).host],
        ...[
          '--certificate',
          admin.certPath,
          '--private-key',
          admin.keyPath,
          '--root-certificate',
          admin.rootPath,
        ],
        ...['--federation', 'study', '--json'],
      ]),
    );
    expect(add.json()).toMatchObject({ name: 'study-lab', federation: 'study' });
    const started = ok(await cli(['run', TINY_APP, 'study-lab', '--json']));
    const { runId } = started.json<{ runId: string }>();
    expect(started.json()).toMatchObject({ superlink: 'study-lab', federation: 'study' });
    // The same federation named last on the default connection.
    const listed = ok(await cli(['list', 'study', '--json'])).json<{
      runs: { runId: string; federation: string }[];
    }>();
    expect(listed.runs).toEqual([expect.objectContaining({ runId, federation: 'study' })]);
    const inDefault = ok(await cli(['list', '--json'])).json<{ runs: { runId: string }[] }>();
    expect(inDefault.runs.map((r) => r.runId)).not.toContain(runId);
    const show = ok(await cli(['federation', 'show', 'study', '--json']));
    expect(show.json<{ runs: { runId: string }[] }>().runs.map((r) => r.runId)).toEqual([runId]);
    expect(ok(await cli(['federation', 'show', 'study'])).stdout).toMatch(
      new RegExp(`^ {2}${runId} +\\S+ +pollen-test-tiny +admin@inproc`, 'm'),
    );
    // Someone invited as a lead there starts runs there under their own name, not in default.
    const lead = await invite('service_account:bob', 'lead');
    ok(await cli(['federation', 'accept', lead.code, '--json'], 'bob'));
    const bobs = ok(await cli(['run', TINY_APP, 'study', '--json'], 'bob')).json<{ runId: string }>();
    const seen = ok(await cli(['list', 'study', '--json'], 'bob')).json<{
      runs: { runId: string; createdBy: string }[];
    }>();
    expect(seen.runs.find((r) => r.runId === bobs.runId)?.createdBy).toBe('sa:bob');
    failure(await cli(['run', TINY_APP, '--json'], 'bob'), 'RIGHT_MISSING', 5);
    // An entry's federation must be a name.
    const bad = await cli([
      'config',
      'superlink',
      'add',
      'x',
      '--address',
      '127.0.0.1:1',
      '--insecure',
      '--federation',
      '../x',
      '--json',
    ]);
    failure(bad, 'INVALID_ARGUMENT', 2);
  });

  it('documents every command with examples', async () => {
    for (const c of [
      'create',
      'list',
      'show',
      'invite',
      'accept',
      'members',
      'remove',
      'revoke-invitation',
    ]) {
      const h = ok(await cli(['federation', c, '--help']));
      expect(h.stdout, c).toContain('Examples:');
    }
  });
});
