import { createClient, createRouterTransport } from '@connectrpc/connect';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { AuditEntry } from '../src/audit/entry.js';
import { entryFromWire } from '../src/audit/wire.js';
import { Federations } from '../src/gen/pollen/v1/federations_pb.js';
import { DEFAULT_ACCESS_POLICY } from '../src/identity/rights.js';
import { auditInterceptor } from '../src/superlink/control-audit.js';
import { callerOf, check, presentedBy } from '../src/superlink/control-auth.js';
import type { BulkRequest } from '../src/transport/bulk-server.js';
import { peerContextKey } from '../src/transport/context.js';
import { errorCodeOf, guard } from '../src/transport/errors.js';
import { connectPipeline } from '../src/transport/rpc-server.js';
import { memoryLinks } from './support/memory-link.js';

const start = memoryLinks('control-audit');

describe('the audit trail of the Control port', () => {
  it('records each state-changing call with who, from where and its outcome, and no read', async () => {
    const m = await start();
    const admin = m.admin('root@test');
    const key = m.nodeKey();
    await admin.registerNode({ publicKey: key.publicKey, name: 'site-a' });
    await admin.listRuns({});
    await admin.listNodes({});
    expect(errorCodeOf(await admin.stopRun({ runId: 'nope' }).catch((e) => e))).toBe('RUN_NOT_FOUND');
    await m.audit.settled();
    const entries = (await m.audit.log.list({}, 100)) as AuditEntry[];
    expect(entries.map((e) => [e.action, e.outcome])).toEqual([
      ['Control/RegisterNode', 'ok'],
      ['Control/StopRun', 'failed RUN_NOT_FOUND'],
    ]);
    expect(entries[0]).toMatchObject({ actor: 'root@test', auth: 'certificate', target: key.nodeId });
    expect(entries[1]).toMatchObject({ target: 'nope' });
  });

  it('records refused authorisations, one entry per actor, code and method however many', async () => {
    const m = await start();
    const member = m.control(m.peer('mia@test', { type: 'admin', role: 'member', org: 'org-a' }));
    const key = m.nodeKey();
    for (let i = 0; i < 100; i++)
      expect(errorCodeOf(await member.registerNode({ publicKey: key.publicKey }).catch((e) => e))).toBe(
        'RIGHT_MISSING',
      );
    const stranger = m.control(undefined, { authorization: 'Bearer not-a-token' });
    await stranger.listRuns({}).catch(() => undefined);
    await m.audit.settled();
    const entries = (await m.audit.log.list({}, 100)) as AuditEntry[];
    expect(entries).toHaveLength(2);
    expect(entries[0]).toMatchObject({
      action: 'Control/RegisterNode',
      actor: 'mia@test',
      actorOrg: 'org-a',
      outcome: 'refused RIGHT_MISSING',
    });
    expect(entries[1]).toMatchObject({ action: 'Control/ListRuns', auth: 'none' });
    await m.audit.close();
    const after = (await m.audit.log.list({ after: 2 }, 100)) as AuditEntry[];
    expect(after).toMatchObject([{ actor: 'mia@test', detail: { repeated: 99 } }]);
  });

  it('serves the trail to audit.read: an org admin reads their organisation, the rest redacted', async () => {
    const m = await start();
    const a = m.control(m.peer('ada@test', { type: 'admin', role: 'org_admin', org: 'org-a' }));
    const b = m.control(m.peer('bo@test', { type: 'admin', role: 'org_admin', org: 'org-b' }));
    await a.registerNode({ publicKey: m.nodeKey().publicKey });
    await b.registerNode({ publicKey: m.nodeKey().publicKey });
    await m.audit.settled();
    const asA = m.auditClient(m.peer('ada@test', { type: 'admin', role: 'org_admin', org: 'org-a' }));
    const listed = await asA.listAudit({});
    expect(listed.entries.map((e) => e.actor)).toEqual(['ada@test']);
    const all = (await asA.listAudit({ redacted: true })).entries.map(entryFromWire);
    expect(all.map((e) => ('redacted' in e ? 'redacted' : e.actor))).toEqual(['ada@test', 'redacted']);
    const member = m.auditClient(m.peer('mia@test', { type: 'admin', role: 'member', org: 'org-a' }));
    expect(errorCodeOf(await member.listAudit({}).catch((e) => e))).toBe('RIGHT_MISSING');
  });
});

describe('the Federations service in the audit trail', () => {
  it('records its state-changing calls with the federation they name, and their refusals', async () => {
    const m = await start();
    const admin = m.federations(m.peer('root@test', { type: 'admin' }));
    await admin.createFederation({ name: 'cancer-study' });
    await admin.listFederations({});
    const member = m.federations(m.peer('mia@test', { type: 'admin', role: 'member', org: 'org-a' }));
    await member.createFederation({ name: 'mine' }).catch(() => undefined);
    await m.audit.settled();
    expect(await m.audit.log.list({}, 10)).toMatchObject([
      {
        action: 'Federations/CreateFederation',
        actor: 'root@test',
        federation: 'cancer-study',
        outcome: 'ok',
      },
      {
        action: 'Federations/CreateFederation',
        actor: 'mia@test',
        federation: 'mine',
        outcome: 'refused RIGHT_MISSING',
      },
    ]);
  });

  it('records a non-member reaching into a federation as a refusal, on reads too, once however often', async () => {
    const m = await start();
    const admin = m.federations(m.peer('root@test', { type: 'admin' }));
    await admin.createFederation({ name: 'cancer-study' });
    const lead = m.peer('lee@test', { type: 'admin', role: 'lead', org: 'org-b' });
    const outsider = m.federations(lead);
    for (let i = 0; i < 20; i++)
      expect(errorCodeOf(await outsider.getFederation({ name: 'cancer-study' }).catch((e) => e))).toBe(
        'FEDERATION_NOT_FOUND',
      );
    expect(
      errorCodeOf(
        await m
          .control(lead)
          .listRuns({ federation: 'cancer-study' })
          .catch((e) => e),
      ),
    ).toBe('FEDERATION_NOT_FOUND');
    await m.audit.settled();
    const entries = (await m.audit.log.list({}, 10)) as AuditEntry[];
    expect(entries.map((e) => [e.action, e.actor, e.federation, e.outcome])).toEqual([
      ['Federations/CreateFederation', 'root@test', 'cancer-study', 'ok'],
      ['Federations/GetFederation', 'lee@test', 'cancer-study', 'refused FEDERATION_NOT_FOUND'],
      ['Control/ListRuns', 'lee@test', 'cancer-study', 'refused FEDERATION_NOT_FOUND'],
    ]);
  });

  it('records a refused chunk upload on the bulk route with its method, chunk and address', async () => {
    const m = await start();
    const member = m.peer('mia@test', { type: 'admin', role: 'member', org: 'org-a' });
    const id = 'a'.repeat(64);
    const put: BulkRequest = {
      method: 'PUT',
      id,
      headers: {},
      peer: member,
      authorization: [],
      address: '192.0.2.7',
    };
    expect(errorCodeOf(await m.controlBulk(put).catch((e) => e))).toBe('RIGHT_MISSING');
    await m.audit.settled();
    expect(await m.audit.log.list({}, 10)).toMatchObject([
      {
        action: 'Chunks/PUT',
        actor: 'mia@test',
        target: id,
        address: '192.0.2.7',
        outcome: 'refused RIGHT_MISSING',
      },
    ]);
  });
});

describe('the audit hook over handlers it does not know', () => {
  it('records a Federations call by its method name, the handler untouched', async () => {
    const m = await start();
    const o = {
      requireAdminCert: true,
      policy: DEFAULT_ACCESS_POLICY,
      audit: m.audit,
      log: pino({ level: 'silent' }),
    };
    // A stand-in for the Federations handlers: they identify the caller as every handler does.
    const pipeline = connectPipeline({
      routes: (router) =>
        router.service(Federations, {
          createFederation: guard(async (req, ctx) => {
            const p = presentedBy(ctx);
            check(p, o, await callerOf(p, o), 'node.manage');
            return { federation: { name: req.name } };
          }),
        }),
      interceptors: [auditInterceptor(m.audit)],
      log: pino({ level: 'silent' }),
    });
    const as = (peer: ReturnType<typeof m.peer>) =>
      createClient(
        Federations,
        createRouterTransport(pipeline.routes, {
          router: {
            ...pipeline.options,
            interceptors: [
              (next) => (req) => {
                req.contextValues.set(peerContextKey, peer);
                return next(req);
              },
              ...pipeline.options.interceptors,
            ],
          },
        }),
      );
    await as(m.peer('root@test', { type: 'admin' })).createFederation({ name: 'cancer-study' });
    const member = as(m.peer('mia@test', { type: 'admin', role: 'member', org: 'org-a' }));
    expect(errorCodeOf(await member.createFederation({ name: 'x' }).catch((e) => e))).toBe('RIGHT_MISSING');
    await m.audit.settled();
    expect(await m.audit.log.list({ federation: 'cancer-study' }, 10)).toMatchObject([
      { action: 'Federations/CreateFederation', actor: 'root@test', target: 'cancer-study', outcome: 'ok' },
    ]);
    expect(await m.audit.log.list({ actor: 'mia@test' }, 10)).toMatchObject([
      { action: 'Federations/CreateFederation', federation: 'x', outcome: 'refused RIGHT_MISSING' },
    ]);
  });
});
