import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openssl, pollen, pollenAsync, pollenInProcess, tempDir } from './support/cli.js';

// Both workflows of the enrollment guide, end to end, as an operator runs them. The sites start
// as processes; the certificates and kits are made in this process (the enrollment manual's
// blocks in docs.test run those commands as processes).

const t = tempDir('pollen-wf-');
afterAll(() => t.cleanup());

describe('manual workflow: cert init, cert site, package, certificates copied in, start', () => {
  const ca = join(t.dir, 'manual', 'ca');
  const certs = join(t.dir, 'manual', 'certs');
  const kits = join(t.dir, 'manual', 'kits');

  it('runs from a fresh CA to started sites', async () => {
    expect((await pollenInProcess(['cert', 'init', '-n', 'My Project', '-o', ca])).code).toBe(0);
    expect(
      (
        await pollenInProcess([
          'cert',
          'site',
          '-n',
          'server1',
          '-t',
          'server',
          '-c',
          ca,
          '--host',
          'localhost',
          '-o',
          join(certs, 'server1'),
        ])
      ).code,
    ).toBe(0);
    for (const site of ['hospital-1', 'hospital-2'])
      expect(
        (
          await pollenInProcess([
            'cert',
            'site',
            '-n',
            site,
            '-t',
            'client',
            '-c',
            ca,
            '-o',
            join(certs, site),
          ])
        ).code,
      ).toBe(0);

    // org admins make their kits; the project admin's certificates are copied into startup/
    const server = await pollenInProcess([
      'package',
      '-n',
      'server1',
      '-e',
      'grpc://0.0.0.0:8002:8003',
      '-t',
      'server',
      '-w',
      kits,
      '--json',
    ]);
    expect(server.code, server.stderr).toBe(0);
    for (const site of ['hospital-1', 'hospital-2']) {
      const r = await pollenInProcess([
        'package',
        '-n',
        site,
        '-e',
        'grpc://localhost:8002',
        '-t',
        'client',
        '-w',
        kits,
        '--json',
      ]);
      expect(r.code, r.stderr).toBe(0);
    }
    for (const name of ['server1', 'hospital-1', 'hospital-2'])
      for (const f of ['rootCA.pem', `${name}.crt`, `${name}.key`])
        copyFileSync(join(certs, name, f), join(kits, name, 'startup', f));

    // a kit meant for distribution holds no private key until the site adds its own
    expect(existsSync(join(kits, 'hospital-1', 'startup', 'hospital-1.key'))).toBe(true);
    for (const name of ['server1', 'hospital-1', 'hospital-2']) {
      const r = pollen(['start', join(kits, name), '--enroll-only', '--json']);
      expect(r.code, r.stderr + r.stdout).toBe(0);
      expect(JSON.stringify(r.json())).toContain(name);
    }
    const crt = join(kits, 'hospital-2', 'startup', 'hospital-2.crt');
    expect(openssl(['verify', '-CAfile', join(ca, 'rootCA.pem'), '-untrusted', crt, crt]).out).toContain(
      ': OK',
    );
  });

  it('refuses to start with a certificate from another project', async () => {
    const other = join(t.dir, 'manual', 'other-ca');
    expect((await pollenInProcess(['cert', 'init', '-n', 'Other', '-o', other])).code).toBe(0);
    expect(
      (
        await pollenInProcess([
          'cert',
          'site',
          '-n',
          'hospital-2',
          '-t',
          'client',
          '-c',
          other,
          '-o',
          join(t.dir, 'manual', 'foreign'),
          '--force',
        ])
      ).code,
    ).toBe(0);
    const startup = join(kits, 'hospital-2', 'startup');
    copyFileSync(join(t.dir, 'manual', 'foreign', 'hospital-2.crt'), join(startup, 'hospital-2.crt'));
    copyFileSync(join(t.dir, 'manual', 'foreign', 'hospital-2.key'), join(startup, 'hospital-2.key'));
    const r = pollen(['start', join(kits, 'hospital-2'), '--enroll-only', '--json']);
    expect(r.code).not.toBe(0);
  });

  it('generates scripts that bash accepts; start.sh runs the site in the background and logs it', async () => {
    const kit = join(kits, 'hospital-1');
    const startup = join(kit, 'startup');
    for (const s of ['start.sh', 'sub_start.sh', 'stop.sh']) {
      expect(statSync(join(startup, s)).mode & 0o111).toBeTruthy();
      expect(spawnSync('bash', ['-n', join(startup, s)]).status).toBe(0);
    }
    const started = spawnSync(join(startup, 'start.sh'), [], { cwd: kit, encoding: 'utf8' });
    expect(started.status, started.stderr).toBe(0);
    expect(started.stdout).toContain('Started hospital-1');
    // The site keeps its certificate and starts its SuperNode, which keeps trying to reach the
    // (absent) SuperLink of the kit until stop.sh ends it.
    await expect
      .poll(() => (existsSync(join(kit, 'log.txt')) ? readFileSync(join(kit, 'log.txt'), 'utf8') : ''), {
        timeout: 20_000,
      })
      .toMatch(/connecting to \S+ as hospital-1/);
    spawnSync(join(startup, 'stop.sh'), [], { cwd: kit });
  });
});

describe('auto-scale workflow: the demo runs it with real processes', () => {
  it('enrolls every site, approves the pending one, refuses a replayed token, verifies every chain', async () => {
    const r = await pollenAsync([
      'demo',
      'enrollment',
      '--sites',
      '3',
      '-w',
      join(t.dir, 'demo'),
      '--keep',
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const s = r.json<any>();
    expect(s.enrolled.map((e: { name: string }) => e.name).sort()).toEqual([
      'hospital-1',
      'hospital-2',
      'hospital-3',
      'partner-1',
    ]);
    expect(s.enrolled.every((e: { verified: boolean }) => e.verified)).toBe(true);
    expect(s.enrolled.find((e: { name: string }) => e.name === 'partner-1').approvedBy).toMatch(/^api-key:/);
    expect(s.enrolled.find((e: { name: string }) => e.name === 'hospital-1').approvedBy).toBe(
      'policy:hospitals-on-our-network',
    );
    expect(s.refused).toEqual([{ what: 'replayed token', code: 'TOKEN_USED' }]);
    // each site keeps its own key, 0600, and the certificate OpenSSL accepts
    for (const name of ['hospital-1', 'partner-1']) {
      const dir = join(t.dir, 'demo', 'sites', name, 'startup');
      expect(statSync(join(dir, `${name}.key`)).mode & 0o777).toBe(0o600);
      const crt = join(dir, `${name}.crt`);
      const v = openssl([
        'verify',
        '-CAfile',
        join(t.dir, 'demo', 'ca', 'rootCA.pem'),
        '-untrusted',
        join(dir, 'chain.pem'),
        crt,
      ]);
      expect(v.out).toContain(': OK');
      // the key in the kit matches the certificate
      const pub = (args: string[]) => execFileSync('openssl', args).toString();
      expect(pub(['x509', '-in', crt, '-noout', '-pubkey'])).toBe(
        pub(['pkey', '-in', join(dir, `${name}.key`), '-pubout']),
      );
    }

    // --keep left the service running: renew a site over mTLS, revoke it, and renewal is refused
    const admin = {
      POLLEN_CERT_SERVICE_URL: s.certServiceUrl,
      POLLEN_API_KEY: readFileSync(join(t.dir, 'demo', 'admin', 'api_key.txt'), 'utf8').trim(),
      POLLEN_CA_CERT: join(t.dir, 'demo', 'ca', 'rootCA.pem'),
    };
    try {
      const kit = join(t.dir, 'demo', 'sites', 'hospital-2');
      const before = s.enrolled.find((e: { name: string }) => e.name === 'hospital-2').serial;
      const renewed = await pollenAsync(['cert', 'renew', kit, '--json']);
      expect(renewed.code, renewed.stderr).toBe(0);
      expect(renewed.json<{ serial: string }>().serial).not.toBe(before);
      const revoked = await pollenAsync(
        ['enrollment', 'revoke', 'hospital-2', '--reason', 'keyCompromise', '--json'],
        { env: admin },
      );
      expect(revoked.code, revoked.stderr).toBe(0);
      expect(revoked.json<{ revoked: unknown[] }>().revoked.length).toBe(2);
      const refused = await pollenAsync(['cert', 'renew', kit, '--json']);
      expect(refused.code).not.toBe(0);
      expect(refused.json<{ error: { code: string } }>().error.code).toBe('CERT_REVOKED');
      const listed = await pollenAsync(['enrollment', 'enrolled', '--all', '--json'], { env: admin });
      expect(
        listed
          .json<{ enrolled: { name: string; revoked: boolean }[] }>()
          .enrolled.filter((e) => e.name === 'hospital-2')
          .every((e) => e.revoked),
      ).toBe(true);
      // a signed kit changed after it was made (here its endpoint) refuses to start
      const cfg = join(t.dir, 'demo', 'sites', 'hospital-3', 'startup', 'fed_client.json');
      writeFileSync(cfg, readFileSync(cfg, 'utf8').replace('localhost', 'evil.example.net'));
      const tampered = await pollenAsync([
        'start',
        join(t.dir, 'demo', 'sites', 'hospital-3'),
        '--enroll-only',
        '--json',
      ]);
      expect(tampered.code).toBe(3);
      expect(tampered.json<{ error: { code: string } }>().error.code).toBe('KIT_TAMPERED');
    } finally {
      process.kill(s.certServicePid, 'SIGTERM');
    }
  }, 180_000); // a Certificate Service and four sites as processes: minutes on a busy 2-core machine
});
