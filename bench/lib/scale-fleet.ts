/**
 * The parts of the scale benches (bench/scale.ts, bench/metrics-cost.ts): a CA with the
 * SuperLink's certificate and one client certificate per node (issued in memory), SuperLink
 * processes (bench/scale-superlink.ts) asked over IPC, and pools of lightweight SuperNodes.
 */
import { generateKeyPairSync } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { keyTypeInfo } from '../../src/pki/keys.js';
import { issueSiteCertificate } from '../../src/pki/profiles.js';
import { ClientApp } from '../../src/sdk/app.js';
import { type SuperNode, startSuperNode } from '../../src/supernode/supernode.js';
import type { TlsMaterial } from '../../src/transport/tls.js';
import { benchPki } from './pki.js';
import { type Receiver, startReceiver } from './receiver.js';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface ScaleFleet {
  /** The bench's folder: the CA, the SuperLink's certificate, state folders. */
  dir: string;
  /** One client certificate per node (`site-i`). */
  certs: TlsMaterial[];
  certMs: number;
}

/** A CA, the SuperLink's server certificate and `n` client certificates in a new folder. */
export async function scaleFleet(prefix: string, n: number): Promise<ScaleFleet> {
  const { dir, ca } = await benchPki(prefix, { name: 'scale', hosts: ['127.0.0.1', 'localhost'] });
  const t = performance.now();
  const certs: TlsMaterial[] = [];
  for (let i = 0; i < n; i++) {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const issued = issueSiteCertificate(
      ca.issuer,
      publicKey.export({ type: 'spki', format: 'der' }),
      keyTypeInfo('ec-p256'),
      { name: `site-${i}`, type: 'client', project: ca.meta.name },
      86_400_000,
    );
    certs.push({
      cert: `${issued.pem}${ca.intermediatePem}\n`,
      key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
      ca: ca.rootPem,
    });
  }
  return { dir, certs, certMs: performance.now() - t };
}

export interface ScaleLinkReady {
  fleetUrl: string;
  /** The ops listener (`/metrics`) when started with metrics; null without. */
  opsUrl: string | null;
  rssKiB: number;
}

/** What `stats` answers (bench/scale-superlink.ts). */
export interface ScaleLinkStats {
  online: number;
  rssKiB: number;
  heapUsed: number;
  cpuMs: number;
}

/** What `round` answers. */
export interface ScaleRound {
  nodes: number;
  roundMs: number;
  pushMs: number;
  replies: number;
  errors: number;
  missing: number;
  firstErrors: string[];
}

/**
 * A SuperLink process on the fleet's certificate, its state in DIR/NAME; with `metrics` its ops
 * listener on a free loopback port (off otherwise, as `--metrics-address off`). `--cpu-prof`
 * profiles it into bench/out/profiles/.
 */
export function startScaleSuperLink(
  dir: string,
  o: { name?: string; metrics?: boolean; cpuProf?: boolean } = {},
): Promise<Receiver<ScaleLinkReady>> {
  const profile = o.cpuProf
    ? ['--cpu-prof', `--cpu-prof-dir=${join(ROOT, 'bench', 'out', 'profiles', o.name ?? 'superlink')}`]
    : [];
  return startReceiver<ScaleLinkReady>(
    [
      ...profile,
      '--import',
      'tsx',
      join(ROOT, 'bench', 'scale-superlink.ts'),
      dir,
      o.name ?? 'superlink',
      ...(o.metrics ? ['--metrics'] : []),
    ],
    ROOT,
  );
}

/** Ask a SuperLink process to stop and wait for it to exit. */
export function stopScaleSuperLink(r: Receiver<unknown>): Promise<void> {
  return new Promise<void>((done) => {
    r.child.once('exit', () => done());
    r.child.send({ cmd: 'stop' });
    setTimeout(() => r.child.kill(), 10_000).unref();
  });
}

/** SuperNodes of one SuperLink, each with its embedded ClientApp that answers with the model it got. */
export class NodePool {
  readonly nodes: SuperNode[] = [];
  readonly #app = new ClientApp({ train: (message) => message.content });
  readonly #quiet = pino({ level: 'silent' });

  constructor(
    private readonly fleetUrl: string,
    private readonly certs: TlsMaterial[],
    private readonly workDir: string,
  ) {}

  /** Start nodes until there are `to`; the time until all of them are activated. */
  async grow(to: number): Promise<number> {
    const t0 = performance.now();
    // At most 64 activations in flight: a sliding window, so the step measures throughput, not a
    // stampede, and no node waits for the slowest of a batch.
    const inFlight = new Set<Promise<unknown>>();
    for (let i = this.nodes.length; i < to; i++) {
      if (inFlight.size >= 64) await Promise.race(inFlight);
      const node = await startSuperNode({
        superlink: this.fleetUrl,
        tls: this.certs[i]!,
        name: `site-${i}`,
        workDir: join(this.workDir, String(i)),
        memoryChunks: true,
        app: this.#app,
        log: this.#quiet,
      });
      this.nodes.push(node);
      const activated: Promise<unknown> = node.ready.then(() => inFlight.delete(activated));
      inFlight.add(activated);
    }
    await Promise.all(inFlight);
    return performance.now() - t0;
  }

  /** Close every node; how long that took. */
  async close(): Promise<number> {
    const t0 = performance.now();
    await Promise.all(this.nodes.map((n) => n.close()));
    return performance.now() - t0;
  }
}
