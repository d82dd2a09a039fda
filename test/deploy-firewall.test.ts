/**
 * `pollen deploy firewall` writes nftables rules that `nft -c` accepts for every role, and that,
 * applied in a network namespace, admit the federation's ports from another host and drop the
 * rest: real TCP connections through a veth pair, each bounded by a timeout.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pollenInProcess, tempDir } from './support/cli.js';
import { type NetnsLab, netnsLab, waitForLine } from './support/netns.js';

const tmp = tempDir('pollen-firewall-');
afterAll(tmp.cleanup);

async function generate(name: string, ...args: string[]): Promise<string> {
  const out = join(tmp.dir, name);
  const r = await pollenInProcess(['deploy', 'firewall', ...args, '-o', out, '--json']);
  expect(r.code, r.stdout + r.stderr).toBe(0);
  return join(out, 'pollen-firewall.nft');
}

const nftCheck = (file: string) => spawnSync('nft', ['-c', '-f', file], { encoding: 'utf8' });

describe('pollen deploy firewall', () => {
  it.each([
    ['superlink', ['--role', 'superlink']],
    [
      'cloud-wireguard',
      ['--role', 'superlink,cert-service', '--vpn', 'wireguard', '--ssh', '198.51.100.7,2001:db8::/32'],
    ],
    [
      'cloud-openvpn',
      ['--role', 'superlink', '--vpn', 'openvpn', '--researchers', '203.0.113.0/24', '--no-ssh'],
    ],
    ['cert-service', ['--role', 'cert-service']],
    ['site', ['--role', 'site', '--vpn', 'wireguard', '--restrict-outbound']],
  ])('%s: nft -c accepts the rules', async (name, args) => {
    const check = nftCheck(await generate(name, ...args));
    expect(check.stderr).toBe('');
    expect(check.status).toBe(0);
  });

  it('opens the Fleet API only inside the VPN, and the VPN port itself', async () => {
    const rules = readFileSync(await generate('vpn', '--role', 'superlink', '--vpn', 'wireguard'), 'utf8');
    expect(rules).toContain('iifname "wg0" tcp dport 9092 accept');
    expect(rules).toContain('udp dport 51820 accept');
    expect(rules).not.toContain('1194');
    expect(rules).not.toMatch(/dport 909[1457]/);
  });

  it('opens no inbound port on a site', async () => {
    const rules = readFileSync(await generate('site-only', '--role', 'site', '--no-ssh'), 'utf8');
    expect(rules.split('chain forward')[0]).not.toMatch(/dport/);
  });

  it.each([
    [['--role', 'router'], 'INVALID_ARGUMENT', 'Unknown host role "router"'],
    [['--role', 'site', '--ssh', '10.0.0.0/33'], 'INVALID_ARGUMENT', '--ssh: "10.0.0.0/33"'],
    [['--role', 'site', '--vpn', 'ipsec'], 'INVALID_ARGUMENT', 'Unknown VPN "ipsec"'],
    [['--role', 'site', '--vpn-interface', 'wg1'], 'USAGE', '--vpn-interface needs --vpn'],
  ])('refuses %j with a precise message', async (args, code, message) => {
    const r = await pollenInProcess(['deploy', 'firewall', ...args, '-o', join(tmp.dir, 'bad'), '--json']);
    expect(r.code).toBe(2);
    expect(r.json<{ error: { code: string; message: string } }>().error).toMatchObject({
      code,
      message: expect.stringContaining(message),
    });
  });

  describe('applied in a network namespace', () => {
    let lab: NetnsLab;
    // The SuperLink and Certificate Service host, and a host outside it.
    const HOST = '10.231.0.1';
    const LISTENED = [8443, 9091, 9092, 9093, 9095, 4000];
    const LISTEN = `const net = require('node:net');
      let n = 0;
      for (const port of ${JSON.stringify(LISTENED)})
        net.createServer((s) => s.end()).listen(port, '0.0.0.0', () => ++n === ${LISTENED.length} && console.log('listening'));`;
    const CONNECT = `const net = require('node:net');
      const [host, ...ports] = process.argv.slice(1);
      Promise.all(ports.map((port) => new Promise((done) => {
        const s = net.connect({ host, port: Number(port), timeout: 1500 });
        s.on('connect', () => { s.destroy(); done([port, 'open']); });
        s.on('timeout', () => { s.destroy(); done([port, 'dropped']); });
        s.on('error', (e) => done([port, e.code]));
      }))).then((r) => console.log(JSON.stringify(Object.fromEntries(r))));`;
    const connect = (from: string, host: string) =>
      JSON.parse(lab.run(from, [process.execPath, '-e', CONNECT, host, ...LISTENED.map(String)]));

    beforeAll(async () => {
      lab = netnsLab('fw', ['cloud', 'outside']);
      lab.link('cloud', `${HOST}/24`, 'outside', '10.231.0.2/24');
      lab.run('cloud', ['nft', '-f', await generate('applied', '--role', 'superlink,cert-service')]);
      await waitForLine(lab.start('cloud', [process.execPath, '-e', LISTEN]), /listening/);
    }, 60_000);
    afterAll(() => lab?.cleanup());

    it('admits the federation from outside and drops every other port', () => {
      expect(connect('outside', HOST)).toEqual({
        8443: 'open',
        9091: 'dropped',
        9092: 'open',
        9093: 'open',
        9095: 'dropped',
        4000: 'dropped',
      });
    });

    it('leaves loopback-only listeners reachable on the host itself', () => {
      expect(connect('cloud', '127.0.0.1')).toMatchObject({ 9091: 'open', 9095: 'open' });
    });
  });
});
