/**
 * Debian's nginx with the configuration of `pollen deploy nginx`, run as the current user under a
 * temporary prefix on free ports of 127.0.0.1, in front of Pollen on 127.0.0.1 (the test and the
 * upload bench). No test-framework imports, so the bench can use it too.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { type NginxOptions, nginxConf, nginxDefaults } from '../../src/deploy/nginx.js';

export const NGINX_DOMAIN = 'pollen.test';

/** A port free on 127.0.0.1 now. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface RunningNginx {
  ports: NginxOptions['ports'] & { sni: number };
  conf: string;
  stderr(): string;
  stop(): Promise<void>;
}

/**
 * Write the generated nginx.conf into `dir` (its runtime folder), check it with `nginx -t`, and
 * run nginx in the foreground until stop().
 */
export async function startNginx(
  dir: string,
  upstreams: NginxOptions['upstreams'],
  more: Partial<NginxOptions> = {},
): Promise<RunningNginx> {
  mkdirSync(dir, { recursive: true });
  // Workers run as an unprivileged user when nginx starts as root: they open the internal socket.
  chmodSync(dir, 0o755);
  const ports = { fleet: await freePort(), certService: await freePort(), control: await freePort() };
  const sni = await freePort();
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    nginxConf({
      ...nginxDefaults(),
      domain: NGINX_DOMAIN,
      listenAddress: '127.0.0.1',
      sniPort: sni,
      ports,
      upstreams,
      runtimeDir: dir,
      ...more,
    }),
  );
  const args = ['-c', conf, '-p', dir, '-e', 'stderr'];
  const check = spawnSync('nginx', ['-t', ...args], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`nginx -t refused the generated configuration:\n${check.stderr}`);
  const child: ChildProcess = spawn('nginx', [...args, '-g', 'daemon off;'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await untilListening(
    sni,
    () => child.exitCode === null,
    () => stderr,
  );
  return {
    ports: { ...ports, sni },
    conf,
    stderr: () => stderr,
    async stop() {
      if (child.exitCode === null) child.kill('SIGQUIT'); // graceful: workers finish, then exit
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

async function untilListening(port: number, alive: () => boolean, stderr: () => string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (!alive()) throw new Error(`nginx exited:\n${stderr()}`);
    const open = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`nginx did not listen on ${port}:\n${stderr()}`);
}
