/**
 * Network namespaces for tests that need real networks between "hosts" (firewall rules, VPN
 * tunnels): each namespace has its own interfaces, routes and nftables rules. Needs root
 * (`ip netns`). Everything made here is removed by `cleanup()`, also after a failure.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';

export interface NetnsLab {
  /** Namespace names, by the short name the test gave. */
  ns: (name: string) => string;
  /** Run a command in a namespace; throws with its output when it fails. */
  run: (name: string, cmd: string[], input?: string) => string;
  /** Start a long-running process in a namespace (killed by cleanup). */
  start: (name: string, cmd: string[], env?: NodeJS.ProcessEnv) => ChildProcess;
  /** A veth pair between two namespaces, each end with its address (CIDR) and up. */
  link: (a: string, aAddress: string, b: string, bAddress: string) => void;
  /**
   * A bridge in namespace `hub` joining the others as one network, as a container engine's:
   * each member gets an eth0 with its address (CIDR).
   */
  bridge: (hub: string, members: Record<string, string>) => void;
  /** The /etc/hosts `ip netns exec` shows processes in a namespace (/etc/netns/NS/hosts). */
  hosts: (name: string, text: string) => void;
  cleanup: () => void;
}

function must(cmd: string[], input?: string): string {
  const r = spawnSync(cmd[0]!, cmd.slice(1), { encoding: 'utf8', input, timeout: 30_000 });
  if (r.status !== 0) throw new Error(`${cmd.join(' ')} failed (${r.status}): ${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** Namespaces `names`, with loopback up in each. */
export function netnsLab(prefix: string, names: string[]): NetnsLab {
  const tag = `${prefix}${process.pid.toString(36)}`;
  const ns = (name: string) => `${tag}-${name}`;
  const children: ChildProcess[] = [];
  const made: string[] = [];
  const cleanup = () => {
    // Each started process leads its own group: its children (apps a SuperLink starts) go with it.
    for (const c of children)
      if (c.pid)
        try {
          process.kill(-c.pid, 'SIGKILL');
        } catch {
          // already gone
        }
    for (const n of made) {
      spawnSync('ip', ['netns', 'delete', n]);
      rmSync(`/etc/netns/${n}`, { recursive: true, force: true });
    }
  };
  try {
    for (const name of names) {
      must(['ip', 'netns', 'add', ns(name)]);
      made.push(ns(name));
      must(['ip', '-n', ns(name), 'link', 'set', 'lo', 'up']);
    }
  } catch (e) {
    cleanup();
    throw e;
  }
  let links = 0;
  return {
    ns,
    run: (name, cmd, input) => must(['ip', 'netns', 'exec', ns(name), ...cmd], input),
    start: (name, cmd, env) => {
      const child = spawn('ip', ['netns', 'exec', ns(name), ...cmd], {
        env: { ...process.env, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      });
      children.push(child);
      return child;
    },
    link: (a, aAddress, b, bAddress) => {
      // Interface names are at most 15 characters, and unique in the namespace they are made in.
      const ends = [`v${tag}${links}a`.slice(-15), `v${tag}${links}b`.slice(-15)];
      links++;
      must([
        'ip',
        'link',
        'add',
        ends[0]!,
        'netns',
        ns(a),
        'type',
        'veth',
        'peer',
        'name',
        ends[1]!,
        'netns',
        ns(b),
      ]);
      for (const [name, end, address] of [
        [a, ends[0]!, aAddress],
        [b, ends[1]!, bAddress],
      ] as const) {
        must(['ip', '-n', ns(name), 'addr', 'add', address, 'dev', end]);
        must(['ip', '-n', ns(name), 'link', 'set', end, 'up']);
      }
    },
    bridge: (hub, members) => {
      must(['ip', '-n', ns(hub), 'link', 'add', 'br0', 'type', 'bridge']);
      must(['ip', '-n', ns(hub), 'link', 'set', 'br0', 'up']);
      for (const [member, address] of Object.entries(members)) {
        const end = `v${tag}${links++}`.slice(-15);
        must([
          'ip',
          '-n',
          ns(hub),
          'link',
          'add',
          end,
          'type',
          'veth',
          'peer',
          'name',
          'eth0',
          'netns',
          ns(member),
        ]);
        must(['ip', '-n', ns(hub), 'link', 'set', end, 'master', 'br0', 'up']);
        must(['ip', '-n', ns(member), 'addr', 'add', address, 'dev', 'eth0']);
        must(['ip', '-n', ns(member), 'link', 'set', 'eth0', 'up']);
      }
    },
    hosts: (name, text) => {
      mkdirSync(`/etc/netns/${ns(name)}`, { recursive: true });
      writeFileSync(`/etc/netns/${ns(name)}/hosts`, text);
    },
    cleanup,
  };
}

/** Resolves with the first line of `child`'s stdout that matches, or rejects when it exits first. */
export function waitForLine(child: ChildProcess, match: RegExp, timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    let stderr = '';
    const timer = setTimeout(
      () => reject(new Error(`no line ${match} within ${timeoutMs} ms: ${stderr}`)),
      timeoutMs,
    );
    child.stderr?.on('data', (d) => (stderr += d));
    child.stdout?.on('data', (d) => {
      buffered += d;
      const line = buffered.split('\n').find((l) => match.test(l));
      if (line !== undefined) {
        clearTimeout(timer);
        resolve(line);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited (${code}) before ${match}: ${stderr}`));
    });
  });
}

/** The one JSON document a `--json` command prints on stdout (whole, once it parses). */
export function waitForJson<T>(child: ChildProcess, timeoutMs = 30_000): Promise<T> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(
      () => reject(new Error(`no JSON within ${timeoutMs} ms: ${stderr.slice(-3000)}`)),
      timeoutMs,
    );
    child.stderr?.on('data', (d) => (stderr += d));
    child.stdout?.on('data', (d) => {
      stdout += d;
      if (!stdout.trim().endsWith('}')) return;
      try {
        const doc = JSON.parse(stdout) as T;
        clearTimeout(timer);
        resolve(doc);
      } catch {
        // not complete yet
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited (${code}) before its JSON: ${stdout}${stderr.slice(-3000)}`));
    });
  });
}
