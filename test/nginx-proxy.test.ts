/**
 * Debian's nginx, configured by `pollen deploy nginx`, in front of a real SuperLink (a process,
 * --proxy-protocol-from 127.0.0.1) and a real Certificate Service (HTTPS on 127.0.0.1, the same):
 * TLS passes through nginx, so client certificates reach Pollen, and the PROXY header carries the
 * client's address. Through nginx: a site enrolls under a `source_ips` rule (allowed from
 * 127.0.0.2, refused from 127.0.0.1: the rule sees the real client, not nginx), renews its
 * certificate over mutual TLS, and as a SuperNode completes a one-round run that an admin submits
 * with its certificate through the Control API. SNI names reach their API; unknown names are
 * refused in the handshake.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPolicy } from '../src/enrollment/policy-load.js';
import { type RunningCertService, startCertService } from '../src/enrollment/service/server.js';
import { issueToken, loadTokenSigner } from '../src/enrollment/token.js';
import { API_KEY, opensslCsr, testPolicy } from './support/cert-service.js';
import { ensureBuilt, tempDir } from './support/cli.js';
import {
  type CertFiles,
  completedRun,
  type Federation,
  makePki,
  startFederation,
  startSuperNode,
  stopAll,
  writeFederationConfig,
} from './support/federation.js';
import { NGINX_DOMAIN, type RunningNginx, startNginx } from './support/nginx.js';

const POLICY = testPolicy('fedtest', [
  '{ name: "second-loopback", match: { site_name_pattern: "site-*", source_ips: ["127.0.0.2/32"] }, action: approve }',
  '{ name: "anywhere-else", match: {}, action: reject }',
]);

const t = tempDir('pollen-nginx-');
let fed: Federation;
let certService: RunningCertService;
let nginx: RunningNginx;
let root: string;
const certServiceLog: string[] = [];

beforeAll(async () => {
  ensureBuilt('cli/main.js');
  const pki = await makePki(t.dir);
  root = readFileSync(pki.server.ca, 'utf8');
  writeFileSync(join(t.dir, 'policy.yaml'), POLICY);
  const pino = (await import('pino')).default;
  certService = await startCertService({
    caDir: pki.caDir,
    workspace: join(t.dir, 'cert-service'),
    host: '127.0.0.1',
    port: 0,
    policyFile: join(t.dir, 'policy.yaml'),
    apiKeys: [API_KEY],
    tidyIntervalMs: 0,
    proxyProtocol: { from: ['127.0.0.1'] },
    logger: pino({ level: 'warn' }, { write: (line: string) => certServiceLog.push(line) }),
  });
  fed = await startFederation('', { pki, dir: t.dir, args: ['--proxy-protocol-from', '127.0.0.1'] });
  const local = (url: string) => ({ host: '127.0.0.1', port: Number(new URL(url).port) });
  nginx = await startNginx(join(t.dir, 'nginx'), {
    fleet: local(fed.link.fleetUrl),
    certService: { host: '127.0.0.1', port: certService.port },
    control: local(fed.link.controlUrl),
  });
  // The admin's CLI reaches the Control API through nginx from now on.
  writeFederationConfig(fed.config, `https://127.0.0.1:${nginx.ports.control}`, pki.admin);
}, 60_000);

afterAll(async () => {
  await stopAll();
  await nginx?.stop();
  await certService?.close();
  t.cleanup();
});

/** POST JSON to the Certificate Service through nginx, from `localAddress`, with a client certificate maybe. */
async function post(
  path: string,
  body: unknown,
  o: { from: string; cert?: string; key?: string },
): Promise<{ status: number; json: Record<string, any> }> {
  const agent = new Agent({
    localAddress: o.from,
    connect: { ca: root, ...(o.cert && { cert: o.cert, key: o.key }) },
  });
  try {
    const r = await request(`https://127.0.0.1:${nginx.ports.certService}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      dispatcher: agent,
    });
    return { status: r.statusCode, json: (await r.body.json()) as Record<string, any> };
  } finally {
    await agent.close();
  }
}

const token = (name: string) =>
  issueToken(loadTokenSigner(join(t.dir, 'ca')), {
    subject: name,
    policy: loadPolicy(join(t.dir, 'policy.yaml')),
  }).token;

/** The fingerprint of the server certificate at `port`, reached with SNI `name` (undefined: refused). */
function serverBehind(port: number, name?: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    // From 127.0.0.2: a connection from 127.0.0.1 (the proxy) without a PROXY header is refused.
    const socket = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' });
    socket.on('error', () => resolve(undefined));
    const s = tls.connect({ socket, ...(name && { servername: name }), rejectUnauthorized: false });
    s.once('secureConnect', () => {
      const fingerprint = s.getPeerCertificate().fingerprint256;
      s.destroy();
      resolve(fingerprint);
    });
    s.once('error', () => resolve(undefined));
  });
}

describe('nginx in front of the SuperLink and the Certificate Service', () => {
  let site: CertFiles;

  it('meets a source_ips rule with the client address, not nginx’s', async () => {
    const refused = await post(
      '/v1/enroll',
      { token: token('site-1'), csr: opensslCsr(t.dir, 'site-1').csr },
      { from: '127.0.0.1' },
    );
    expect(refused.json).toMatchObject({ error: { code: 'ENROLLMENT_REJECTED' } });
    const csr = opensslCsr(t.dir, 'site-1');
    const issued = await post('/v1/enroll', { token: token('site-1'), csr: csr.csr }, { from: '127.0.0.2' });
    expect(issued.status, JSON.stringify(issued.json)).toBe(200);
    expect(issued.json).toMatchObject({ status: 'issued', name: 'site-1' });
    writeFileSync(join(t.dir, 'site-1.crt'), issued.json.certificate + issued.json.chain);
    site = {
      name: 'site-1',
      type: 'client',
      cert: join(t.dir, 'site-1.crt'),
      key: csr.keyPath,
      ca: root,
      serial: issued.json.serial,
    };
    writeFileSync(join(t.dir, 'root.pem'), root);
    site.ca = join(t.dir, 'root.pem');
  });

  it('renews a certificate over mutual TLS passed through', async () => {
    const renewed = await post(
      '/v1/renew',
      { csr: opensslCsr(t.dir, 'site-1').csr },
      { from: '127.0.0.2', cert: readFileSync(site.cert, 'utf8'), key: readFileSync(site.key, 'utf8') },
    );
    expect(renewed.status, JSON.stringify(renewed.json)).toBe(200);
    expect(renewed.json).toMatchObject({ name: 'site-1' });
    expect(renewed.json.serial).not.toBe(site.serial);
  });

  it('completes a run: the enrolled SuperNode on the Fleet API, the admin on the Control API', async () => {
    await startSuperNode({
      fleetUrl: `https://127.0.0.1:${nginx.ports.fleet}`,
      cert: site,
      workDir: join(t.dir, 'node'),
      partitionId: 0,
    });
    const out = await completedRun(fed, ['num-rounds=1', 'min-nodes=1']);
    expect(out.rounds.map((r) => r.round)).toEqual([1]);
  }, 90_000);

  it('routes SNI names to their API, and refuses a name it does not list', async () => {
    const superlink = await serverBehind(Number(new URL(fed.link.fleetUrl).port));
    const certs = await serverBehind(certService.port);
    expect(superlink).not.toBe(certs);
    expect(await serverBehind(nginx.ports.sni, `fleet.${NGINX_DOMAIN}`)).toBe(superlink);
    expect(await serverBehind(nginx.ports.sni, `control.${NGINX_DOMAIN}`)).toBe(superlink);
    expect(await serverBehind(nginx.ports.sni, `certs.${NGINX_DOMAIN}`)).toBe(certs);
    expect(await serverBehind(nginx.ports.sni, `other.${NGINX_DOMAIN}`)).toBeUndefined();
    expect(await serverBehind(nginx.ports.sni)).toBeUndefined();
  });

  it('refuses a PROXY header sent straight to Pollen by a client that is not the proxy', async () => {
    const s = net.connect({ host: '127.0.0.1', port: certService.port, localAddress: '127.0.0.2' });
    s.on('error', () => undefined);
    s.write('PROXY TCP4 10.1.1.1 127.0.0.1 1 2\r\n');
    await new Promise((resolve) => s.once('close', resolve));
    expect(certServiceLog.join('')).toContain(
      'a PROXY header from an address that is not a configured proxy',
    );
  });
});
