/**
 * Every role × every right × the caller's own / another organisation, against the real services:
 * a SuperLink's Control API over TLS on 127.0.0.1, called with real admin certificates that carry
 * the role and `O=`; the Certificate Service's admin API (Fastify inject) called with access
 * tokens carrying the role and organisation. Then each role held in a federation (by invitation,
 * by a caller whose own role is `member`), exercised there and in a federation they are not in.
 * The expected outcomes are written out below, not
 * derived from the policy: a change to the default policy must change this table too.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@connectrpc/connect';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/enrollment/service/app.js';
import type { EnrollmentSchema } from '../src/enrollment/service/schema.js';
import { issueToken } from '../src/enrollment/token.js';
import { Control } from '../src/gen/pollen/v1/control_pb.js';
import { Federations } from '../src/gen/pollen/v1/federations_pb.js';
import { ROLES, type Role } from '../src/identity/identity.js';
import type { LoadedCa } from '../src/pki/ca.js';
import { nodeIdFromPublicKey, sshPublicKeyLine } from '../src/pki/openssh.js';
import { createSiteCertificate } from '../src/pki/site.js';
import type { Database } from '../src/store/database.js';
import type { SuperLink } from '../src/superlink/superlink.js';
import { openChannel, type RpcChannel } from '../src/transport/rpc-client.js';
import { loadTlsMaterial } from '../src/transport/tls.js';
import { type Answer, callApp, RoutesFixture } from './support/cert-service.js';
import { outcomeOf } from './support/errors.js';
import { tlsSuperLink } from './support/inproc.js';
import { type LocalTokens, localTokens } from './support/local-tokens.js';
import { pendingRun } from './support/runs.js';

type Outcome =
  | 'ok'
  | 'RIGHT_MISSING'
  | 'WRONG_ORGANISATION'
  | 'hidden'
  | 'FEDERATION_NOT_FOUND'
  | 'RUN_NOT_FOUND';
/** own: what the caller created; same: another person's, in the caller's organisation; other: another organisation's. */
type Cell =
  | 'run.submit'
  | 'run.view@same'
  | 'run.view@other'
  | 'run.stop@own'
  | 'run.stop@same'
  | 'run.stop@other'
  | 'node.manage@same'
  | 'node.manage@other'
  | 'enrollment.decide@same'
  | 'enrollment.decide@other'
  | 'service_account.manage@same'
  | 'service_account.manage@other'
  | 'audit.read@same'
  | 'audit.read@other';

// biome-ignore format: the matrix reads as a table
const EXPECTED: Record<Role, Record<Cell, Outcome>> = {
  project_admin: {
    'run.submit': 'ok',
    'run.view@same': 'ok',                'run.view@other': 'ok',
    'run.stop@own': 'ok',                 'run.stop@same': 'ok',                  'run.stop@other': 'ok',
    'node.manage@same': 'ok',             'node.manage@other': 'ok',
    'enrollment.decide@same': 'ok',       'enrollment.decide@other': 'ok',
    'service_account.manage@same': 'ok',  'service_account.manage@other': 'ok',
    'audit.read@same': 'ok',              'audit.read@other': 'ok',
  },
  org_admin: {
    'run.submit': 'RIGHT_MISSING',
    'run.view@same': 'ok',                'run.view@other': 'ok',
    'run.stop@own': 'ok',                 'run.stop@same': 'ok',                  'run.stop@other': 'WRONG_ORGANISATION',
    'node.manage@same': 'ok',             'node.manage@other': 'WRONG_ORGANISATION',
    'enrollment.decide@same': 'ok',       'enrollment.decide@other': 'WRONG_ORGANISATION',
    'service_account.manage@same': 'ok',  'service_account.manage@other': 'WRONG_ORGANISATION',
    'audit.read@same': 'ok',              'audit.read@other': 'hidden',
  },
  lead: {
    'run.submit': 'ok',
    'run.view@same': 'ok',                'run.view@other': 'ok',
    'run.stop@own': 'ok',                 'run.stop@same': 'WRONG_ORGANISATION',  'run.stop@other': 'WRONG_ORGANISATION',
    'node.manage@same': 'RIGHT_MISSING',  'node.manage@other': 'RIGHT_MISSING',
    'enrollment.decide@same': 'RIGHT_MISSING', 'enrollment.decide@other': 'RIGHT_MISSING',
    'service_account.manage@same': 'RIGHT_MISSING', 'service_account.manage@other': 'RIGHT_MISSING',
    'audit.read@same': 'RIGHT_MISSING',   'audit.read@other': 'RIGHT_MISSING',
  },
  member: {
    'run.submit': 'RIGHT_MISSING',
    'run.view@same': 'ok',                'run.view@other': 'ok',
    'run.stop@own': 'RIGHT_MISSING',      'run.stop@same': 'RIGHT_MISSING',       'run.stop@other': 'RIGHT_MISSING',
    'node.manage@same': 'RIGHT_MISSING',  'node.manage@other': 'RIGHT_MISSING',
    'enrollment.decide@same': 'RIGHT_MISSING', 'enrollment.decide@other': 'RIGHT_MISSING',
    'service_account.manage@same': 'RIGHT_MISSING', 'service_account.manage@other': 'RIGHT_MISSING',
    'audit.read@same': 'RIGHT_MISSING',   'audit.read@other': 'RIGHT_MISSING',
  },
};

/**
 * In a federation: `fed` is the one where the caller's membership has the role (their own role is
 * `member`), `other` one they do not belong to; runs are another person's of their organisation
 * unless `own`.
 */
type FederationCell =
  | 'run.submit@fed'
  | 'run.submit@other'
  | 'run.view@fed'
  | 'run.view@other'
  | 'run.stop@fed-own'
  | 'run.stop@fed'
  | 'run.stop@other'
  | 'node.manage@fed'
  | 'node.manage@other'
  | 'federation.manage@fed'
  | 'federation.manage@other'
  | 'federation.create';

// biome-ignore format: the matrix reads as a table
const EXPECTED_IN_FEDERATION: Record<Role, Record<FederationCell, Outcome>> = {
  project_admin: {
    'run.submit@fed': 'ok',               'run.submit@other': 'FEDERATION_NOT_FOUND',
    'run.view@fed': 'ok',                 'run.view@other': 'RUN_NOT_FOUND',
    'run.stop@fed-own': 'ok',             'run.stop@fed': 'ok',                   'run.stop@other': 'RUN_NOT_FOUND',
    'node.manage@fed': 'ok',              'node.manage@other': 'FEDERATION_NOT_FOUND',
    'federation.manage@fed': 'ok',        'federation.manage@other': 'FEDERATION_NOT_FOUND',
    'federation.create': 'RIGHT_MISSING',
  },
  org_admin: {
    'run.submit@fed': 'RIGHT_MISSING',    'run.submit@other': 'FEDERATION_NOT_FOUND',
    'run.view@fed': 'ok',                 'run.view@other': 'RUN_NOT_FOUND',
    'run.stop@fed-own': 'ok',             'run.stop@fed': 'ok',                   'run.stop@other': 'RUN_NOT_FOUND',
    'node.manage@fed': 'ok',              'node.manage@other': 'FEDERATION_NOT_FOUND',
    'federation.manage@fed': 'ok',        'federation.manage@other': 'FEDERATION_NOT_FOUND',
    'federation.create': 'RIGHT_MISSING',
  },
  lead: {
    'run.submit@fed': 'ok',               'run.submit@other': 'FEDERATION_NOT_FOUND',
    'run.view@fed': 'ok',                 'run.view@other': 'RUN_NOT_FOUND',
    'run.stop@fed-own': 'ok',             'run.stop@fed': 'WRONG_ORGANISATION',   'run.stop@other': 'RUN_NOT_FOUND',
    'node.manage@fed': 'RIGHT_MISSING',   'node.manage@other': 'FEDERATION_NOT_FOUND',
    'federation.manage@fed': 'RIGHT_MISSING', 'federation.manage@other': 'FEDERATION_NOT_FOUND',
    'federation.create': 'RIGHT_MISSING',
  },
  member: {
    'run.submit@fed': 'RIGHT_MISSING',    'run.submit@other': 'FEDERATION_NOT_FOUND',
    'run.view@fed': 'ok',                 'run.view@other': 'RUN_NOT_FOUND',
    'run.stop@fed-own': 'RIGHT_MISSING',  'run.stop@fed': 'RIGHT_MISSING',        'run.stop@other': 'RIGHT_MISSING',
    'node.manage@fed': 'RIGHT_MISSING',   'node.manage@other': 'FEDERATION_NOT_FOUND',
    'federation.manage@fed': 'RIGHT_MISSING', 'federation.manage@other': 'FEDERATION_NOT_FOUND',
    'federation.create': 'RIGHT_MISSING',
  },
};

const ORG = 'Alpha Clinic';
const OTHER = 'Beta Hospital';

let dir: string;
let ca: LoadedCa;
let superlink: SuperLink;
const channels: RpcChannel[] = [];
const f = new RoutesFixture('pollen-matrix-');
let tokens: LocalTokens;
let store: Database<EnrollmentSchema>;
let app: FastifyInstance;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pollen-matrix-'));
  ({ ca, superlink } = await tlsSuperLink(dir, 'matrix', {
    project: 'matrix',
    log: pino({ level: 'silent' }),
  }));
  tokens = await localTokens();
  await f.setup();
  store = await f.openStore('matrix');
  app = buildApp(await f.service(store, { tokens: tokens.verifier }), { logger: false });
});

afterAll(async () => {
  for (const c of channels) c.close();
  await superlink?.close();
  await app?.close();
  await store?.close();
  f.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

/** Control and Federations clients presenting an admin certificate of `role` in `org`. */
async function adminOf(
  role: Role,
  org: string,
  name = `${role}@${org.split(' ')[0]!.toLowerCase()}.example`,
): Promise<{ control: Client<typeof Control>; federations: Client<typeof Federations>; name: string }> {
  const c = await createSiteCertificate(ca, {
    name,
    type: 'admin',
    role,
    org,
    outDir: join(dir, 'admins', name),
    validityDays: 1,
    force: true,
  });
  const channel = openChannel({
    baseUrl: superlink.controlUrl,
    tls: { ...loadTlsMaterial({ cert: c.certPath, key: c.keyPath, ca: c.rootPath }) },
  });
  channels.push(channel);
  return { control: channel.client(Control), federations: channel.client(Federations), name };
}

/** A pending run created by `subject` of `org` in `federation` (as StartRun records it); its id. */
const runOf = (subject: string, org: string, federation = 'default') =>
  pendingRun(superlink.state, 'app', { subject, org, federation });

/** A node key registered by an admin of `org`; its node id. */
async function keyOf(org: string): Promise<string> {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const nodeId = nodeIdFromPublicKey(publicKey);
  await superlink.state.registerNodeKey({
    nodeId,
    publicKey: sshPublicKeyLine(publicKey),
    name: nodeId,
    org,
  });
  return nodeId;
}

/** A site of `org` waiting for approval (the fixture's policy holds every request); its name. */
let sites = 0;
async function pendingSiteOf(org: string): Promise<string> {
  const name = `site-${++sites}`;
  const token = issueToken(f.signer, { subject: name, org, policy: f.policy, now: f.now() }).token;
  const r = await callApp(app, 'POST', '/v1/enroll', { token, csr: f.csrFor(name).csr });
  expect(r.status).toBe(202);
  return name;
}

/** The Pollen code of an admin API answer, 'ok' for 200. */
const codeOfAnswer = (r: Answer): string => (r.status === 200 ? 'ok' : r.json.error.code);

/** A SuperLink call that passed its checks and failed for its content counts as allowed. */
const allowedIf = (code: string) => (o: string) => (o === code ? 'ok' : o);

describe('the access matrix: every role × right × organisation × federation, on the real services', () => {
  it('matches the table for each role', async () => {
    const actual: Record<string, Record<string, string>> = {};
    await pendingSiteOf(OTHER); // the other organisation's entries in the audit trail
    for (const role of ROLES) {
      const { control, name } = await adminOf(role, ORG);
      const token = await tokens.sign(`${role}-person`, { roles: [role], org: ORG });
      const asUser = { headers: { authorization: `Bearer ${token}` } };
      const cells: Record<string, string> = {};
      // StartRun without a bundle: INVALID_REQUEST once the right is granted.
      cells['run.submit'] = allowedIf('INVALID_REQUEST')(await outcomeOf(control.startRun({})));
      cells['run.view@same'] = await outcomeOf(control.getRunDetails({ runId: await runOf('x@alpha', ORG) }));
      cells['run.view@other'] = await outcomeOf(
        control.getRunDetails({ runId: await runOf('y@beta', OTHER) }),
      );
      cells['run.stop@own'] = await outcomeOf(control.stopRun({ runId: await runOf(name, ORG) }));
      cells['run.stop@same'] = await outcomeOf(control.stopRun({ runId: await runOf('x@alpha', ORG) }));
      cells['run.stop@other'] = await outcomeOf(control.stopRun({ runId: await runOf('y@beta', OTHER) }));
      cells['node.manage@same'] = await outcomeOf(control.unregisterNode({ nodeId: await keyOf(ORG) }));
      cells['node.manage@other'] = await outcomeOf(control.unregisterNode({ nodeId: await keyOf(OTHER) }));
      for (const [cell, org] of [
        ['enrollment.decide@same', ORG],
        ['enrollment.decide@other', OTHER],
      ] as const) {
        const site = await pendingSiteOf(org);
        cells[cell] = codeOfAnswer(
          await callApp(app, 'POST', '/v1/requests/approve', { names: [site] }, asUser),
        );
      }
      for (const [cell, org] of [
        ['service_account.manage@same', ORG],
        ['service_account.manage@other', OTHER],
      ] as const) {
        const account = `${role.replace('_', '-')}-${org === ORG ? 'same' : 'other'}`;
        const onSuperLink = await outcomeOf(
          control.createServiceAccount({ name: account, roles: ['member'], org }),
        );
        // The Certificate Service keeps its own accounts under the same right: the same outcome.
        const onCertService = codeOfAnswer(
          await callApp(
            app,
            'POST',
            '/v1/service-accounts',
            { name: account, roles: ['member'], org },
            asUser,
          ),
        );
        cells[cell] =
          onSuperLink === onCertService
            ? onSuperLink
            : `SuperLink ${onSuperLink}, Certificate Service ${onCertService}`;
      }
      const audit = await callApp(app, 'GET', '/v1/audit?limit=1000', undefined, asUser);
      const orgs = new Set<unknown>(
        (audit.json.entries ?? []).map((e: { detail: { org?: string } }) => e.detail.org),
      );
      for (const [cell, org] of [
        ['audit.read@same', ORG],
        ['audit.read@other', OTHER],
      ] as const)
        cells[cell] = audit.status !== 200 ? audit.json.error.code : orgs.has(org) ? 'ok' : 'hidden';
      actual[role] = cells;
    }
    expect(actual).toEqual(EXPECTED);
  });

  it('matches the table for each role held in a federation, there and in another', async () => {
    const operator = await adminOf('project_admin', ORG, 'operator@alpha.example');
    await operator.federations.createFederation({ name: 'fed-same' });
    await operator.federations.createFederation({ name: 'fed-other' });
    const newKey = () => sshPublicKeyLine(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey);
    const actual: Record<string, Record<string, string>> = {};
    for (const role of ROLES) {
      // Their own role is `member`; in fed-same they hold `role` by invitation.
      const name = `fed-${role.replace('_', '-')}@alpha.example`;
      const { code } = await operator.federations.inviteMember({
        federation: 'fed-same',
        subject: `certificate:${name}`,
        role,
      });
      const me = await adminOf('member', ORG, name);
      await me.federations.acceptInvitation({ code });
      const { control, federations } = me;
      const c: Record<string, string> = {};
      const submit = allowedIf('INVALID_REQUEST');
      c['run.submit@fed'] = submit(await outcomeOf(control.startRun({ federation: 'fed-same' })));
      c['run.submit@other'] = submit(await outcomeOf(control.startRun({ federation: 'fed-other' })));
      c['run.view@fed'] = await outcomeOf(
        control.getRunDetails({ runId: await runOf('x@alpha', ORG, 'fed-same') }),
      );
      c['run.view@other'] = await outcomeOf(
        control.getRunDetails({ runId: await runOf('x@alpha', ORG, 'fed-other') }),
      );
      c['run.stop@fed-own'] = await outcomeOf(control.stopRun({ runId: await runOf(name, ORG, 'fed-same') }));
      c['run.stop@fed'] = await outcomeOf(
        control.stopRun({ runId: await runOf('x@alpha', ORG, 'fed-same') }),
      );
      c['run.stop@other'] = await outcomeOf(
        control.stopRun({ runId: await runOf('x@alpha', ORG, 'fed-other') }),
      );
      c['node.manage@fed'] = await outcomeOf(
        control.registerNode({ publicKey: newKey(), federation: 'fed-same' }),
      );
      c['node.manage@other'] = await outcomeOf(
        control.registerNode({ publicKey: newKey(), federation: 'fed-other' }),
      );
      for (const [cell, federation] of [
        ['federation.manage@fed', 'fed-same'],
        ['federation.manage@other', 'fed-other'],
      ] as const)
        c[cell] = await outcomeOf(
          federations.inviteMember({ federation, subject: 'someone', role: 'member' }),
        );
      c['federation.create'] = await outcomeOf(
        federations.createFederation({ name: `by-${role.replace('_', '-')}` }),
      );
      actual[role] = c;
    }
    expect(actual).toEqual(EXPECTED_IN_FEDERATION);
  });
});
