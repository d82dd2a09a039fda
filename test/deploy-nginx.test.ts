/**
 * `pollen deploy nginx` writes a configuration Debian's nginx accepts (`nginx -t`, run as the
 * current user under a temporary prefix), with and without the dashboard, and refuses bad input
 * with a code and a hint. The configuration at work: test/nginx-proxy.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pollenInProcess, tempDir } from './support/cli.js';
import { selfSigned } from './support/fixtures.js';

const tmp = tempDir('pollen-deploy-nginx-');
afterAll(tmp.cleanup);

const BASE = ['deploy', 'nginx', '--domain', 'pollen.example.org', '--listen-address', '127.0.0.1'];

async function generate(name: string, more: string[] = []): Promise<string> {
  const out = join(tmp.dir, name);
  const r = await pollenInProcess([...BASE, '--runtime-dir', out, ...more, '-o', out, '--json']);
  expect(r.code, r.stdout + r.stderr).toBe(0);
  expect(r.json()).toMatchObject({
    ok: true,
    generator: 'nginx',
    files: [{ path: 'nginx.conf', mode: '0644' }],
  });
  return join(out, 'nginx.conf');
}

const nginxTest = (conf: string, prefix: string) =>
  spawnSync('nginx', ['-t', '-c', conf, '-p', prefix, '-e', 'stderr'], { encoding: 'utf8' });

describe('pollen deploy nginx', () => {
  it('writes a configuration nginx -t accepts: TLS passed through by SNI name and by port', async () => {
    const conf = await generate('passthrough');
    const check = nginxTest(conf, join(tmp.dir, 'passthrough'));
    expect(check.stderr).toContain('test is successful');
    expect(check.status).toBe(0);
    const text = readFileSync(conf, 'utf8');
    for (const line of [
      'ssl_preread on;',
      'proxy_protocol on;',
      'fleet.pollen.example.org pollen_fleet;',
      'certs.pollen.example.org pollen_cert_service;',
      'control.pollen.example.org pollen_control;',
      '9092 pollen_fleet;',
      'ssl_reject_handshake on;',
      'listen 127.0.0.1:443;',
    ])
      expect(text).toContain(line);
    // Without --dashboard-cert no TLS ends at nginx.
    expect(text).not.toContain('ssl_certificate ');
  });

  it('ends TLS at nginx for the dashboard only, checking the Control API against the project root', async () => {
    selfSigned(join(tmp.dir, 'dash.key'), join(tmp.dir, 'dash.crt'), '/CN=dashboard.pollen.example.org', 1);
    const conf = await generate('dashboard', [
      '--dashboard-cert',
      join(tmp.dir, 'dash.crt'),
      '--dashboard-key',
      join(tmp.dir, 'dash.key'),
      '--root-ca',
      join(tmp.dir, 'dash.crt'),
      '--proxy-bind',
      '127.0.0.1',
    ]);
    const check = nginxTest(conf, join(tmp.dir, 'dashboard'));
    expect(check.status, check.stderr).toBe(0);
    const text = readFileSync(conf, 'utf8');
    expect(text).toContain('server_name dashboard.pollen.example.org;');
    expect(text).toContain('proxy_ssl_verify on;');
    expect(text).toContain('proxy_bind 127.0.0.1;');
  });

  it('refuses bad input with a code and a hint', async () => {
    const cases: [string[], string, RegExp][] = [
      [['--domain', 'not a domain'], 'INVALID_ARGUMENT', /is not a DNS domain/],
      [['--listen-address', 'example.org'], 'INVALID_ARGUMENT', /takes the host's IP address/],
      [['--sni-port', '9092'], 'INVALID_ARGUMENT', /must differ/],
      [['--fleet-port', '70000'], 'INVALID_ARGUMENT', /is not a port/],
      [['--dashboard-cert', '/x.pem'], 'USAGE', /together/],
      [['--proxy-bind', 'nginx-host'], 'INVALID_ARGUMENT', /--proxy-bind takes an IP address/],
    ];
    for (const [flags, code, message] of cases) {
      const r = await pollenInProcess([...BASE, ...flags, '-o', join(tmp.dir, 'bad'), '--json']);
      expect(r.code).not.toBe(0);
      const doc = r.json<{ ok: boolean; error: { code: string; message: string; hint: string } }>();
      expect(doc.error.code, flags.join(' ')).toBe(code);
      expect(doc.error.message).toMatch(message);
      expect(doc.error.hint).toBeTruthy();
    }
  });
});
