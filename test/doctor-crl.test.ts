/**
 * `pollen doctor` on a site kit whose certificate's issuer has no CRL in the Certificate
 * Service's list: the project rotated its intermediate, the site holds the project's current
 * chain but still its certificate of the retired intermediate, and the service's CA folder lost
 * that intermediate's key, so it signs no CRL for it. Real parts: a CA, a kit made by
 * `pollen package`, a SuperLink and a Certificate Service over TLS, the doctor run in full.
 */
import { copyFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadKit } from '../src/enrollment/kit/load.js';
import type { Finding } from '../src/observability/doctor/findings.js';
import { initCa } from '../src/pki/ca.js';
import { rotateIntermediate } from '../src/pki/ca-rotate.js';
import type { SuperLink } from '../src/superlink/superlink.js';
import { API_KEY, type LiveCertService, startLiveCertService, testPolicy } from './support/cert-service.js';
import { pollenInProcess, tempDir } from './support/cli.js';
import { tlsSuperLink } from './support/inproc.js';

const t = tempDir('pollen-doctor-crl-');
const caDir = join(t.dir, 'ca');
const kit = join(t.dir, 'ws', 'clinic-1');
let link: SuperLink;
let service: LiveCertService | undefined;

async function startService(): Promise<string> {
  await service?.close();
  service = await startLiveCertService(join(t.dir, 'svc'), {
    name: 'Doctor CRL',
    caDir,
    policy: testPolicy('doctor-crl', ['{ name: "all", match: {}, action: approve }']),
    apiKey: API_KEY,
  });
  return `https://127.0.0.1:${service.svc.port}`;
}

beforeAll(async () => {
  await initCa({ name: 'Doctor CRL', dir: caDir, keyType: 'ec-p256' });
  link = (await tlsSuperLink(join(t.dir, 'link'), 'Doctor CRL', { log: pino({ level: 'silent' }) }, caDir))
    .superlink;
  const url = await startService();
  // The site's kit, enrolled with the Certificate Service under the first intermediate.
  const made = await pollenInProcess([
    'package',
    '-n',
    'clinic-1',
    '-e',
    `grpcs://${new URL(link.fleetUrl).host}`,
    '--cert-service',
    url,
    '--token',
    service!.token('clinic-1'),
    '-c',
    caDir,
    '-w',
    join(t.dir, 'ws'),
  ]);
  expect(made.code, made.stdout + made.stderr).toBe(0);
  const enrolled = await pollenInProcess(['start', kit, '--enroll-only']);
  expect(enrolled.code, enrolled.stdout + enrolled.stderr).toBe(0);
}, 120_000);
afterAll(async () => {
  await service?.close();
  await link?.close();
  t.cleanup();
});

async function doctor(certService: string): Promise<{ code: number; findings: Finding[] }> {
  const r = await pollenInProcess(['doctor', kit, '--cert-service', certService, '--json']);
  return { code: r.code, findings: r.json<{ findings: Finding[] }>().findings };
}

const byId = (findings: Finding[], id: string) => findings.find((x) => x.id === id);

describe('pollen doctor and the revocation list', () => {
  it("finds the kit's certificate not revoked while the list holds its issuer's CRL", async () => {
    const d = await doctor(await startService());
    expect(byId(d.findings, 'kit.revocation')).toMatchObject({
      status: 'ok',
      message: expect.stringContaining('not revoked'),
    });
    expect(d.code, JSON.stringify(d.findings)).toBe(0);
  });

  it("warns, with what to do, when the list holds no CRL of the intermediate that issued the kit's certificate", async () => {
    await rotateIntermediate(caDir);
    // The site holds the project's current chain (new and retired intermediate) …
    copyFileSync(join(caDir, 'chain.pem'), loadKit(kit).paths.chain);
    // … and the service's CA folder no longer holds the retired intermediate's key.
    const retiredKey = readdirSync(caDir).find((f) => /^intermediateCA-[0-9a-f]+\.key$/.test(f));
    expect(retiredKey).toBeDefined();
    rmSync(join(caDir, retiredKey!));

    const d = await doctor(await startService());
    const finding = byId(d.findings, 'kit.revocation');
    expect(finding).toMatchObject({
      status: 'warn',
      message: expect.stringMatching(
        /^The revocation list holds no CRL of the intermediate that issued The kit's certificate \(.*Doctor CRL.*\): whether it is revoked cannot be checked$/,
      ),
      fix: expect.stringContaining("keep a retired intermediate's key (intermediateCA-FINGERPRINT.key)"),
    });
    // A warning, not a failure: the certificate still chains and is in date.
    expect(byId(d.findings, 'kit.chain')?.status).toBe('ok');
    expect(d.code, JSON.stringify(d.findings)).toBe(0);
  });
});
