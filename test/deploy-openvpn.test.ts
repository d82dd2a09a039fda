/**
 * `pollen deploy openvpn` writes configurations the real OpenVPN 2.6 accepts, and the tunnel they
 * make carries TCP: a hub in one network namespace (the cloud host), an organisation's client in
 * another, each pinning the other's certificate fingerprint, and an echo through the hub's VPN
 * address. A client whose certificate the hub does not list is refused.
 */
import { type ChildProcess, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pollenInProcess, tempDir } from './support/cli.js';
import { type NetnsLab, netnsLab, waitForLine } from './support/netns.js';

const tmp = tempDir('pollen-openvpn-');
afterAll(tmp.cleanup);
const VPN = join(tmp.dir, 'vpn');
const HUB = '10.78.0.1';
const READY = /Initialization Sequence Completed/;
/** Debian 12's OpenVPN 2.6 (peer-fingerprint needs 2.6). */
const OPENVPN = '/usr/sbin/openvpn';

/** A TCP echo server on the hub's VPN address: prints "listening", answers each line with it. */
const ECHO_SERVER = `require('node:net').createServer((s) => s.pipe(s)).listen(7000, '${HUB}', () => console.log('listening'))`;
const ECHO_CLIENT = `const s = require('node:net').connect(7000, '${HUB}', () => s.end('through the tunnel'));
let got = ''; s.on('data', (d) => (got += d)); s.on('close', () => console.log(got));
setTimeout(() => process.exit(3), 5000).unref();`;

async function generate(out: string, ...orgs: string[]) {
  const r = await pollenInProcess([
    'deploy',
    'openvpn',
    ...orgs.flatMap((org) => ['--org', org]),
    '--endpoint',
    '10.232.1.1',
    '-o',
    out,
    '--json',
  ]);
  expect(r.code, r.stdout + r.stderr).toBe(0);
  return r;
}

describe('pollen deploy openvpn', () => {
  beforeAll(async () => {
    const r = await generate(VPN, 'site-1', 'site-2');
    expect(r.json<{ files: { path: string; mode: string }[] }>().files).toEqual([
      { path: 'hub/pollen.conf', mode: '0600' },
      { path: 'hub/ccd/site-1', mode: '0644' },
      { path: 'hub/ccd/site-2', mode: '0644' },
      { path: 'site-1/pollen.conf', mode: '0600' },
      { path: 'site-2/pollen.conf', mode: '0600' },
    ]);
  });

  it('pins certificates whose fingerprints openssl agrees with, and routes only to the hub', () => {
    const hub = readFileSync(join(VPN, 'hub', 'pollen.conf'), 'utf8');
    const site = readFileSync(join(VPN, 'site-1', 'pollen.conf'), 'utf8');
    const certOf = (conf: string) => /<cert>\n([\s\S]*?)<\/cert>/.exec(conf)![1]!;
    const fingerprint = (conf: string) =>
      spawnSync('openssl', ['x509', '-noout', '-fingerprint', '-sha256'], {
        input: certOf(conf),
        encoding: 'utf8',
      })
        .stdout.replace(/^.*=/, '')
        .trim();
    expect(site).toContain(`<peer-fingerprint>\n${fingerprint(hub)}\n</peer-fingerprint>`);
    expect(hub).toContain(fingerprint(site));
    expect(site).toContain('remote 10.232.1.1 1194');
    expect(hub).not.toMatch(/^client-to-client/m);
    expect(readFileSync(join(VPN, 'hub', 'ccd', 'site-2'), 'utf8')).toContain(
      'ifconfig-push 10.78.0.3 255.255.255.0',
    );
  });

  it('refuses a second --org of the same name', async () => {
    const r = await pollenInProcess([
      'deploy',
      'openvpn',
      '--org',
      'a',
      '--org',
      'a',
      '--endpoint',
      'x',
      '-o',
      join(tmp.dir, 'twice'),
      '--json',
    ]);
    expect(r.code).toBe(2);
    expect(r.json<{ error: { code: string } }>().error.code).toBe('INVALID_ARGUMENT');
  });

  describe('a tunnel between two network namespaces', () => {
    let lab: NetnsLab;
    let hub: ChildProcess;
    const openvpn = (side: string, folder: string) =>
      lab.start(side, [OPENVPN, '--cd', folder, '--config', 'pollen.conf']);

    beforeAll(async () => {
      lab = netnsLab('ov', ['hub', 'site', 'other']);
      lab.link('hub', '10.232.1.1/24', 'site', '10.232.1.2/24');
      lab.link('hub', '10.232.2.1/24', 'other', '10.232.2.2/24');
      hub = openvpn('hub', join(VPN, 'hub'));
      await waitForLine(hub, READY);
    }, 30_000);
    afterAll(() => lab?.cleanup());

    it("carries a TCP connection to the hub's VPN address", async () => {
      const client = openvpn('site', join(VPN, 'site-1'));
      await waitForLine(client, READY);
      await waitForLine(lab.start('hub', [process.execPath, '-e', ECHO_SERVER]), /listening/);
      expect(lab.run('site', [process.execPath, '-e', ECHO_CLIENT]).trim()).toBe('through the tunnel');
      expect(lab.run('site', ['ip', '-4', 'addr', 'show', 'tun0'])).toContain('10.78.0.2/24');
    }, 30_000);

    it('refuses an organisation the hub does not list', async () => {
      // Generated apart: its own certificate, but the hub's fingerprint and tls-crypt key copied in
      // (from site-1's file) so the handshake reaches the hub's check of the client's certificate.
      const stranger = join(tmp.dir, 'stranger');
      await generate(stranger, 'stranger');
      const own = readFileSync(join(stranger, 'stranger', 'pollen.conf'), 'utf8');
      const site = readFileSync(join(VPN, 'site-1', 'pollen.conf'), 'utf8');
      const block = (tag: string, text: string) => new RegExp(`<${tag}>[\\s\\S]*</${tag}>`).exec(text)![0];
      const text = ['peer-fingerprint', 'tls-crypt']
        .reduce((t, tag) => t.replace(block(tag, own), block(tag, site)), own)
        .replace('remote 10.232.1.1', 'remote 10.232.2.1');
      const folder = join(tmp.dir, 'stranger-client');
      mkdirSync(folder);
      writeFileSync(join(folder, 'pollen.conf'), text, { mode: 0o600 });
      const refused = waitForLine(hub, /peer-fingerprint certificate hash verification failed/);
      lab.start('other', [OPENVPN, '--cd', folder, '--config', 'pollen.conf']);
      await refused;
    }, 30_000);
  });
});
