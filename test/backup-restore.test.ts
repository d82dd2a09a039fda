/**
 * Backup and restore of running components: a Certificate Service with enrolled sites, a pending
 * request and audit entries, and a SuperLink (a real process) with a registered node key and a
 * finished run, are backed up by `pollen backup` processes while they run, restored into fresh
 * folders, started again, and found whole — with their audit chains still verifying. The same
 * SuperLink is then checked by `pollen doctor` as a process.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCertService } from '../src/enrollment/service/server.js';
import { type LiveCertService, startLiveCertService, testPolicy } from './support/cert-service.js';
import { ensureBuilt, pollenAsync, pollenInProcess } from './support/cli.js';
import {
  cliEnv,
  completedRun,
  type Federation,
  sshKeygen,
  startFederation,
  startSuperLink,
  tempDir,
  writeFederationConfig,
} from './support/federation.js';

const KEY = 'pollen_test_admin_key_backup_0123456789abcdef';
const PASS = { POLLEN_BACKUP_PASSPHRASE: 'the backup passphrase of this test' };
const t = tempDir('pollen-backup-run-');
let cs: LiveCertService;
let fed: Federation;

beforeAll(async () => {
  ensureBuilt('cli/main.js');
  cs = await startLiveCertService(join(t.dir, 'cs'), {
    name: 'Backup',
    apiKey: KEY,
    policy: testPolicy('backup', [
      '{ name: "hospitals", match: { site_name_pattern: "hospital-*" }, action: approve }',
      '{ name: "others-wait", match: {}, action: pending }',
    ]),
  });
  fed = await startFederation('pollen-backup-fed-');
  await fed.addNode('site-0', 0);
}, 120_000);
afterAll(async () => {
  await cs?.close();
  await fed?.close();
  t.cleanup();
});

/** `pollen ARGS` as a process, with the backup passphrase in its environment. */
const cli = (args: string[]) => pollenAsync(args, { env: cliEnv(PASS) });

describe('pollen backup and pollen restore, of running components', () => {
  it('restores every enrolled site, pending request, audit entry, node key and finished run', async () => {
    // Activity on both.
    expect((await cs.enroll('hospital-1')).status).toBe(200);
    expect((await cs.enroll('hospital-2')).status).toBe(200);
    expect((await cs.enroll('clinic-9')).status).toBe(202);
    const key = sshKeygen(join(t.dir, 'node-key'), 256);
    expect((await fed.query(['supernode', 'register', `${key}.pub`, '--json'])).code).toBe(0);
    const run = await completedRun(fed, ['num-rounds=1', 'min-nodes=1']);

    const original = await pollenInProcess(
      ['audit', 'verify', '--cert-service', `https://localhost:${cs.svc.port}`, '--json'],
      {
        env: { POLLEN_API_KEY: KEY, POLLEN_CA_CERT: join(cs.caDir, 'rootCA.pem') },
      },
    );
    const auditedBefore = original.json<{ entries: number }>().entries;
    expect(auditedBefore).toBeGreaterThanOrEqual(3);

    // Backups while both run (each a process; the service answers from this one).
    const [csBackup, linkBackup] = await Promise.all([
      cli([
        'backup',
        join(t.dir, 'cs', 'ws'),
        '-c',
        cs.caDir,
        '-o',
        join(t.dir, 'cs.pollen-backup'),
        '--json',
      ]),
      cli(['backup', join(fed.dir, 'superlink'), '-o', join(t.dir, 'link.pollen-backup'), '--json']),
    ]);
    expect(csBackup.code, csBackup.stderr).toBe(0);
    expect(csBackup.json()).toMatchObject({ component: 'cert-service', privateKeys: true, encrypted: true });
    expect(linkBackup.code, linkBackup.stderr).toBe(0);
    expect(linkBackup.json()).toMatchObject({ component: 'superlink', database: 'sqlite' });

    // Restore into fresh folders and start from them.
    const csDir = join(t.dir, 'cs-restored');
    const linkDir = join(t.dir, 'link-restored');
    for (const [file, dir, component] of [
      ['cs.pollen-backup', csDir, 'cert-service'],
      ['link.pollen-backup', linkDir, 'superlink'],
    ] as const) {
      const r = await cli(['restore', join(t.dir, file), '-w', dir, '--component', component, '--json']);
      expect(r.code, r.stderr).toBe(0);
    }
    const restored = await startCertService({
      caDir: join(csDir, 'ca'),
      workspace: csDir,
      host: '127.0.0.1',
      port: 0,
      apiKeys: [KEY],
      policyFile: cs.policyFile,
      logger: false,
      tidyIntervalMs: 0,
    });
    try {
      const env = {
        POLLEN_CERT_SERVICE_URL: `https://localhost:${restored.port}`,
        POLLEN_API_KEY: KEY,
        POLLEN_CA_CERT: join(csDir, 'ca', 'rootCA.pem'),
      };
      const enrolled = await pollenInProcess(['enrollment', 'enrolled', '--json'], { env });
      expect(enrolled.stdout).toContain('hospital-1');
      expect(enrolled.stdout).toContain('hospital-2');
      const pending = await pollenInProcess(['enrollment', 'list', '--json'], { env });
      expect(pending.stdout).toContain('clinic-9');
      const verify = await pollenInProcess(
        ['audit', 'verify', '--cert-service', env.POLLEN_CERT_SERVICE_URL, '--json'],
        {
          env,
        },
      );
      expect(verify.code, verify.stdout).toBe(0);
      expect(verify.json<{ verified: boolean; entries: number }>()).toMatchObject({ verified: true });
      expect(verify.json<{ entries: number }>().entries).toBeGreaterThanOrEqual(auditedBefore);
    } finally {
      await restored.close();
    }

    const link = await startSuperLink({ pki: fed.pki, stateDir: linkDir });
    try {
      const config = writeFederationConfig(join(t.dir, 'restored.toml'), link.controlUrl, fed.pki.admin);
      const query = (args: string[]) => pollenInProcess(args, { env: cliEnv({ POLLEN_CONFIG: config }) });
      const nodes = (await query(['supernode', 'list', 'test', '--json'])).json<{
        nodes: { registered: boolean }[];
      }>();
      expect(nodes.nodes.some((n) => n.registered)).toBe(true);
      const runs = await query(['list', 'test', '--json']);
      expect(runs.stdout).toContain(run.run.runId);
      const audit = await query(['audit', 'verify', '--json']);
      expect(audit.code, audit.stdout).toBe(0);
      expect(audit.json()).toMatchObject({ verified: true });

      // pollen doctor, as a process, on the restored SuperLink and its folder.
      const doctor = await pollenAsync(
        [
          'doctor',
          '--superlink',
          `127.0.0.1:${link.ports.fleet}`,
          '--root-ca',
          fed.pki.server.ca,
          '--state-dir',
          linkDir,
          '--json',
        ],
        { env: cliEnv() },
      );
      expect(doctor.code, doctor.stdout).toBe(0);
      const ids = doctor
        .json<{ findings: { id: string; status: string }[] }>()
        .findings.map((x) => `${x.id}:${x.status}`);
      expect(ids).toEqual(
        expect.arrayContaining([
          'superlink.port:ok',
          'superlink.name:ok',
          'superlink.chain:ok',
          'store.writable:ok',
        ]),
      );
    } finally {
      await link.stop();
    }
  });
});
