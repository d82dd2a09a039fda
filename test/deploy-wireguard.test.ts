/**
 * `pollen deploy wireguard` writes configurations the real tools accept (`wg-quick strip`, then
 * `wg setconf` on a wireguard-go interface; keys match `wg pubkey`), and the tunnel they make
 * carries a federation: a real SuperLink in one network namespace (the cloud host), a real
 * SuperNode in another (a site) reaching the Fleet API at the hub's VPN address only, and a run
 * that completes its round through the tunnel. Kernel WireGuard is not needed: wireguard-go.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { wireguardKeyPair } from '../src/deploy/wireguard.js';
import { createSiteCertificate } from '../src/pki/site.js';
import { pollenInProcess, tempDir } from './support/cli.js';
import { BIN, cliEnv, makePki, TINY_APP, writeFederationConfig } from './support/federation.js';
import { type NetnsLab, netnsLab, waitForJson } from './support/netns.js';

const tmp = tempDir('pollen-wireguard-');
afterAll(tmp.cleanup);
const VPN = join(tmp.dir, 'vpn');
/** The userspace WireGuard (Debian's wireguard-go): no kernel module is needed. */
const WIREGUARD_GO = '/usr/bin/wireguard-go';

const wg = (args: string[], input?: string) => spawnSync('wg', args, { encoding: 'utf8', input });

describe('pollen deploy wireguard', () => {
  beforeAll(async () => {
    const r = await pollenInProcess([
      'deploy',
      'wireguard',
      '--org',
      'site-1',
      '--org',
      'site-2',
      '--endpoint',
      '10.231.1.1',
      '-o',
      VPN,
      '--json',
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
  });

  it('makes keys wg agrees with', () => {
    const pair = wireguardKeyPair(Buffer.alloc(32, 7));
    expect(wg(['pubkey'], `${pair.privateKey}\n`).stdout.trim()).toBe(pair.publicKey);
    const hub = readFileSync(join(VPN, 'hub', 'wg0.conf'), 'utf8');
    const site = readFileSync(join(VPN, 'site-1', 'wg0.conf'), 'utf8');
    const hubPrivate = /PrivateKey = (\S+)/.exec(hub)![1]!;
    expect(site).toContain(`PublicKey = ${wg(['pubkey'], `${hubPrivate}\n`).stdout.trim()}`);
    expect(site).toContain('AllowedIPs = 10.77.0.1/32');
    expect(site).toContain('Endpoint = 10.231.1.1:51820');
    expect(hub).toContain('AllowedIPs = 10.77.0.3/32');
  });

  it('refuses a network too small for the organisations', async () => {
    const r = await pollenInProcess([
      'deploy',
      'wireguard',
      '--org',
      'a',
      '--org',
      'b',
      '--endpoint',
      'x',
      '--network',
      '10.9.0.0/30',
      '-o',
      join(tmp.dir, 'small'),
      '--json',
    ]);
    expect(r.code).toBe(2);
    expect(r.json<{ error: { code: string; message: string } }>().error).toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: '--network 10.9.0.0/30 holds 1 organisations, not 2',
    });
  });

  describe('a tunnel between two network namespaces', () => {
    let lab: NetnsLab;
    const HUB = '10.77.0.1';
    // Interface names are global to wireguard-go's control sockets (/var/run/wireguard): unique.
    const ifName = (side: string) => `wg${side}${process.pid.toString(36)}`.slice(0, 15);

    /** wireguard-go in the namespace, configured from the generated file with wg itself. */
    async function bringUp(side: 'hub' | 'site', folder: string, address: string, route?: string) {
      const name = ifName(side);
      const child = lab.start(side, [WIREGUARD_GO, '-f', name], {
        WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1',
      });
      // wireguard-go makes the interface, then serves wg's control socket: wait for both.
      const sock = `/var/run/wireguard/${name}.sock`;
      for (
        let i = 0;
        !existsSync(sock) || spawnSync('ip', ['-n', lab.ns(side), 'link', 'show', name]).status !== 0;
        i++
      ) {
        if (i > 200 || child.exitCode !== null) throw new Error(`wireguard-go ${name} did not start`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const stripped = spawnSync('wg-quick', ['strip', join(VPN, folder, 'wg0.conf')], { encoding: 'utf8' });
      expect(stripped.status, stripped.stderr).toBe(0);
      const setconf = join(tmp.dir, `${side}.setconf`);
      writeFileSync(setconf, stripped.stdout, { mode: 0o600 });
      lab.run(side, ['wg', 'setconf', name, setconf]);
      lab.run(side, ['ip', 'addr', 'add', address, 'dev', name]);
      lab.run(side, ['ip', 'link', 'set', name, 'up']);
      if (route) lab.run(side, ['ip', 'route', 'add', route, 'dev', name]);
    }

    beforeAll(async () => {
      lab = netnsLab('wg', ['hub', 'site']);
      lab.link('hub', '10.231.1.1/24', 'site', '10.231.1.2/24');
      await bringUp('hub', 'hub', `${HUB}/24`);
      await bringUp('site', 'site-1', '10.77.0.2/32', `${HUB}/32`);
    }, 60_000);
    afterAll(() => lab?.cleanup());

    it('wg shows the peers the files name', () => {
      const dump = lab.run('hub', ['wg', 'show', ifName('hub'), 'allowed-ips']);
      expect(dump).toContain('10.77.0.2/32');
      expect(dump).toContain('10.77.0.3/32');
    });

    it("carries a SuperNode's Fleet traffic: a run completes its round through the tunnel", async () => {
      const pki = await makePki(join(tmp.dir, 'pki'));
      // The SuperLink's certificate names its VPN address (where sites reach it) and loopback (the admin here).
      const server = await createSiteCertificate(pki.ca, {
        name: 'superlink-vpn',
        type: 'server',
        outDir: join(tmp.dir, 'pki', 'vpn-server'),
        validityDays: 2,
        hosts: [HUB, '127.0.0.1'],
      });
      const site = await pki.cert('site-1');
      const env = cliEnv();
      const link = lab.start(
        'hub',
        [
          process.execPath,
          BIN,
          'superlink',
          '--json',
          '--cert',
          server.certPath,
          '--key',
          server.keyPath,
          '--root-ca',
          server.rootPath,
          '--state-dir',
          join(tmp.dir, 'superlink'),
          '--fleet-address',
          `${HUB}:9092`,
          '--control-address',
          '127.0.0.1:0',
          '--serverappio-address',
          '127.0.0.1:0',
        ],
        env,
      );
      const { control } = await waitForJson<{ control: string }>(link);
      // The site knows the SuperLink only by its address inside the tunnel.
      const node = lab.start(
        'site',
        [
          process.execPath,
          BIN,
          'supernode',
          '--json',
          '--cert',
          site.cert,
          '--key',
          site.key,
          '--root-ca',
          site.ca,
          '--superlink',
          `${HUB}:9092`,
          '--node-config',
          'partition-id=0',
          '--work-dir',
          join(tmp.dir, 'site-1'),
          '--heartbeat-interval',
          '1',
        ],
        env,
      );
      const { nodeId } = await waitForJson<{ nodeId: string }>(node);
      mkdirSync(join(tmp.dir, 'admin'));
      const config = writeFederationConfig(join(tmp.dir, 'admin', 'config.toml'), control, pki.admin);
      const run = lab.start(
        'hub',
        [
          process.execPath,
          BIN,
          'run',
          TINY_APP,
          'test',
          '--stream',
          '--json',
          '--run-config',
          'num-rounds=1',
          '--run-config',
          'min-nodes=1',
        ],
        { ...env, POLLEN_CONFIG: config },
      );
      const out = await waitForJson<{
        run: { status: string; subStatus: string };
        rounds: { nodes: string[] }[];
      }>(run, 90_000);
      expect(out.run, JSON.stringify(out)).toMatchObject({ status: 'finished', subStatus: 'completed' });
      expect(out.rounds.map((r) => r.nodes)).toEqual([[nodeId]]);
      // And the traffic went through the tunnel: the hub saw the site's handshake and bytes.
      const transfer = lab.run('hub', ['wg', 'show', ifName('hub'), 'transfer']);
      const received = transfer
        .trim()
        .split('\n')
        .reduce((sum, line) => sum + Number(line.split('\t')[1] ?? 0), 0);
      expect(received).toBeGreaterThan(10_000);
    }, 120_000);
  });
});
