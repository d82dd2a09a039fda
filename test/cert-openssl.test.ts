import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openssl, pollenInProcess as pollen, pollen as pollenProcess, tempDir } from './support/cli.js';

// The manual workflow's certificates, checked by OpenSSL rather than by our own code. The CLI runs
// in this process (its main()); one case runs the built CLI as a real process.
const t = tempDir('pollen-cert-');
const ca = join(t.dir, 'ca');
afterAll(() => t.cleanup());

/** `openssl s_server` on a free port of 127.0.0.1, once it listens. */
function sServer(args: string[]): Promise<{ server: ChildProcess; port: number }> {
  const server = spawn('openssl', ['s_server', '-accept', '127.0.0.1:0', ...args]);
  return new Promise((resolvePort, reject) => {
    let out = '';
    server.stdout.on('data', (d) => {
      out += d;
      const m = /ACCEPT 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolvePort({ server, port: Number(m[1]) });
    });
    server.once('exit', (code) => reject(new Error(`openssl s_server exited (${code}): ${out}`)));
  });
}

/** `openssl s_server` for one connection, as server1, requiring a client certificate of the root. */
function mtlsServer(...more: string[]): Promise<{ server: ChildProcess; port: number }> {
  const s = join(t.dir, 'server1');
  const identity = ['-cert', join(s, 'server1.crt'), '-key', join(s, 'server1.key')];
  const verify = ['-CAfile', join(ca, 'rootCA.pem'), '-Verify', '2', '-verify_return_error'];
  return sServer([...identity, ...more, ...verify, '-naccept', '1', '-www']);
}

beforeAll(async () => {
  writeFileSync(join(t.dir, 'pass'), 'correct horse\n');
  const init = await pollen([
    'cert',
    'init',
    '-n',
    'Test Project',
    '-o',
    ca,
    '--passphrase-file',
    join(t.dir, 'pass'),
    '--json',
  ]);
  expect(init.code, init.stderr).toBe(0);
  for (const [name, type, extra] of [
    ['server1', 'server', ['--host', 'localhost', '--host', '127.0.0.1']],
    ['hospital-1', 'client', ['--org', 'Hospital One']],
    ['relay-1', 'relay', []],
    ['admin@example.com', 'admin', ['--role', 'project_admin']],
  ] as const) {
    const args = ['cert', 'site', '-n', name, '-t', type, '-c', ca, '-o', join(t.dir, name), ...extra];
    const r = await pollen(args);
    expect(r.code, r.stderr).toBe(0);
  }
});

const text = (name: string) =>
  openssl(['x509', '-in', join(t.dir, name, `${name}.crt`), '-noout', '-text']).out;

describe('pollen cert, checked with openssl', () => {
  it('writes the root key encrypted and 0600, and the CA files', () => {
    expect(statSync(join(ca, 'rootCA.key')).mode & 0o777).toBe(0o600);
    expect(statSync(join(ca, 'intermediateCA.key')).mode & 0o777).toBe(0o600);
    expect(statSync(join(ca, 'token.key')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(ca, 'rootCA.key'), 'utf8')).toContain('BEGIN ENCRYPTED PRIVATE KEY');
    // openssl can open it with the passphrase and not without
    expect(
      openssl(['pkey', '-in', join(ca, 'rootCA.key'), '-passin', 'pass:correct horse', '-noout']).code,
    ).toBe(0);
    expect(openssl(['pkey', '-in', join(ca, 'rootCA.key'), '-passin', 'pass:wrong', '-noout']).code).not.toBe(
      0,
    );
    // PBES2 with PBKDF2-HMAC-SHA256, 600,000 iterations (0x927C0), AES-256-CBC
    const asn1 = openssl(['asn1parse', '-in', join(ca, 'rootCA.key')]).out;
    expect(asn1).toContain('PBES2');
    expect(asn1).toContain('hmacWithSHA256');
    expect(asn1).toContain('aes-256-cbc');
    expect(asn1).toMatch(/INTEGER\s+:0927C0/);
  });

  it('refuses to overwrite an existing CA', () => {
    const r = pollenProcess(['cert', 'init', '-n', 'Again', '-o', ca, '--json']); // the built CLI
    expect(r.code).toBe(6);
    expect(r.json<{ error: { code: string } }>().error.code).toBe('CA_EXISTS');
  });

  it('issues certificates that verify against the root and intermediate', async () => {
    expect(openssl(['verify', '-CAfile', join(ca, 'rootCA.pem'), join(ca, 'intermediateCA.pem')]).code).toBe(
      0,
    );
    for (const name of ['server1', 'hospital-1', 'relay-1', 'admin@example.com']) {
      const crt = join(t.dir, name, `${name}.crt`);
      const r = openssl([
        'verify',
        '-x509_strict',
        '-CAfile',
        join(ca, 'rootCA.pem'),
        '-untrusted',
        crt,
        crt,
      ]);
      expect(r.out).toContain(': OK');
      expect(statSync(join(t.dir, name, `${name}.key`)).mode & 0o777).toBe(0o600);
    }
    // and not against an unrelated root
    const other = join(t.dir, 'other');
    expect((await pollen(['cert', 'init', '-n', 'Other', '-o', other])).code).toBe(0);
    const crt = join(t.dir, 'hospital-1', 'hospital-1.crt');
    expect(openssl(['verify', '-CAfile', join(other, 'rootCA.pem'), '-untrusted', crt, crt]).code).not.toBe(
      0,
    );
  });

  it('puts the right extensions in each profile', () => {
    const server = text('server1');
    expect(server).toMatch(/Basic Constraints: critical\s+CA:FALSE/);
    expect(server).toMatch(/Key Usage: critical\s+Digital Signature/);
    expect(server).toMatch(/Extended Key Usage:\s+TLS Web Server Authentication\n/);
    expect(server).toContain('DNS:localhost');
    expect(server).toContain('IP Address:127.0.0.1');
    expect(server).toContain('URI:pollen://test-project/server/server1');

    const client = text('hospital-1');
    expect(client).toMatch(/Extended Key Usage:\s+TLS Web Client Authentication\n/);
    expect(client).toContain('O = Hospital One');
    expect(client).toContain('URI:pollen://test-project/client/hospital-1');
    expect(client).not.toContain('DNS:');

    const admin = text('admin@example.com');
    expect(admin).toContain('email:admin@example.com');
    expect(admin).toContain('title = project_admin');
    expect(admin).toContain('unstructuredName = project_admin');

    const serials = ['server1', 'hospital-1', 'relay-1'].map(
      (n) => /Serial Number:\s*\n\s*([0-9a-f:]+)/.exec(text(n))?.[1],
    );
    expect(new Set(serials).size).toBe(3);
    expect(serials.every((s) => s && s.split(':').length === 16)).toBe(true);
  });

  it('completes an mTLS handshake between openssl s_server and s_client', async () => {
    const c = join(t.dir, 'hospital-1');
    const { server, port } = await mtlsServer('-cert_chain', join(ca, 'intermediateCA.pem'));
    const client = openssl(
      [
        's_client',
        '-connect',
        `127.0.0.1:${port}`,
        '-CAfile',
        join(ca, 'rootCA.pem'),
        '-cert',
        join(c, 'hospital-1.crt'),
        '-key',
        join(c, 'hospital-1.key'),
        '-cert_chain',
        join(ca, 'intermediateCA.pem'),
        '-verify_return_error',
        '-verify_hostname',
        'localhost',
      ],
      'GET / HTTP/1.0\r\n\r\n',
    );
    server.kill();
    expect(client.out).toContain('Verify return code: 0 (ok)');
    expect(client.out).toMatch(/Client certificate|CN = hospital-1|Cipher is/);
  });

  it('refuses an mTLS client without a project certificate', async () => {
    const { server, port } = await mtlsServer();
    const client = openssl(
      ['s_client', '-connect', `127.0.0.1:${port}`, '-CAfile', join(ca, 'rootCA.pem')],
      'GET / HTTP/1.0\r\n\r\n',
    );
    server.kill();
    expect(client.out).not.toContain('HTTP/1.0 200');
  });

  it('revokes a hand-issued certificate and writes a CRL that OpenSSL enforces', async () => {
    const list = (await pollen(['cert', 'list', '-c', ca, '--json'])).json<{ issued: { name: string }[] }>();
    expect(list.issued.map((r) => r.name)).toEqual(
      expect.arrayContaining(['server1', 'hospital-1', 'relay-1']),
    );
    const r = await pollen(['cert', 'revoke', 'relay-1', '-c', ca, '--reason', 'keyCompromise', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const bundle = join(t.dir, 'bundle.pem');
    writeFileSync(
      bundle,
      readFileSync(join(ca, 'rootCA.pem'), 'utf8') + readFileSync(join(ca, 'intermediateCA.pem'), 'utf8'),
    );
    const crl = join(ca, 'crl.pem');
    const check = (name: string) => {
      const crt = join(t.dir, name, `${name}.crt`);
      return openssl(['verify', '-crl_check', '-CAfile', bundle, '-CRLfile', crl, '-untrusted', crt, crt])
        .out;
    };
    expect(check('relay-1')).toContain('certificate revoked');
    expect(check('hospital-1')).toContain(': OK');
    expect(openssl(['crl', '-in', crl, '-noout', '-text']).out).toContain('Key Compromise');
    // revoking it again finds nothing to revoke
    expect((await pollen(['cert', 'revoke', 'relay-1', '-c', ca])).code).toBe(4);
  });

  it('refuses a site certificate without a CA, with a hint', async () => {
    const r = await pollen(['cert', 'site', '-n', 'x', '-t', 'client', '--json'], {
      env: { POLLEN_CA_PATH: '' },
    });
    expect(r.code).toBe(4);
    expect(r.json<{ error: { code: string; hint: string } }>().error).toMatchObject({ code: 'CA_NOT_FOUND' });
  });

  it('refuses bad names and hosts', async () => {
    expect(
      (await pollen(['cert', 'site', '-n', '../evil', '-t', 'client', '-c', ca, '-o', t.dir])).code,
    ).toBe(2);
    expect(
      (
        await pollen([
          'cert',
          'site',
          '-n',
          'ok',
          '-t',
          'server',
          '-c',
          ca,
          '--host',
          'not a host',
          '-o',
          t.dir,
        ])
      ).code,
    ).toBe(2);
  });

  it('makes 256-bit API keys and never the same twice', async () => {
    const a = (await pollen(['cert', 'api-key', '--json'])).json<{ apiKey: string; sha256: string }>();
    const b = (await pollen(['cert', 'api-key', '--json'])).json<{ apiKey: string }>();
    expect(a.apiKey).not.toBe(b.apiKey);
    expect(Buffer.from(a.apiKey.replace('pollen_', ''), 'base64url').length).toBeGreaterThanOrEqual(32);
    expect(a.sha256).toMatch(/^[0-9a-f]{64}$/);
    const f = join(t.dir, 'api_key.txt');
    expect((await pollen(['cert', 'api-key', '-o', f])).code).toBe(0);
    expect(statSync(f).mode & 0o777).toBe(0o600);
  });
});
