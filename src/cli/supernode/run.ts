import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { PollenError } from '../../errors.js';
import { parseResources } from '../../supernode/resources.js';
import { untilSignalOr } from '../command.js';
import { parseConfigPairs } from '../config-pairs.js';
import { opsListen } from '../metrics-address.js';
import { bold, dim, type Output } from '../output.js';
import { parseAddress, resolveTls, type TlsFlags } from '../participant-tls.js';
import type { ParticipantContext, ParticipantOutcome } from '../participants.js';

/** The options of `pollen supernode` (running one). */
export interface SuperNodeOptions extends TlsFlags {
  superlink?: string;
  name?: string;
  authSupernodePrivateKey?: string;
  nodeConfig: string[];
  trustedApp?: string[];
  python?: string;
  resources?: string;
  shareGpus?: boolean;
  workDir: string;
  clientappioAddress: string;
  heartbeatInterval: string;
  metricsAddress?: string;
  logLevel: string;
  logFormat?: string;
}

/** The participant name in a certificate's `pollen://PROJECT/TYPE/NAME` URI SAN, if any. */
export function certificateName(pem: string): string | undefined {
  try {
    const san = new X509Certificate(pem).subjectAltName ?? '';
    return /URI:pollen:\/\/[^/\s,]+\/[a-z]+\/([^/\s,]+)/.exec(san)?.[1];
  } catch {
    return undefined;
  }
}

/** `pollen supernode`: connect to the SuperLink and train for its runs until a signal stops it. */
export async function runSuperNode(o: SuperNodeOptions, out: Output): Promise<void> {
  const { tls, kit } = resolveTls(o, 'client', out);
  const resources = parseResources(o.resources);
  const { createLogger } = await import('../../observability/log.js');
  const { startSuperNode } = await import('../../supernode/supernode.js');
  const { parseSshPrivateKey } = await import('../../pki/openssh.js');
  let superlink = o.superlink;
  if (!superlink && kit) superlink = `${kit.config.endpoint.host}:${kit.config.endpoint.port}`;
  if (!superlink) throw new PollenError('USAGE', 'Give --superlink HOST:PORT (or a kit with an endpoint)');
  const address = parseAddress(superlink, '--superlink');
  const authKey = o.authSupernodePrivateKey
    ? parseSshPrivateKey(readNodeKey(o.authSupernodePrivateKey))
    : undefined;
  // Each value may hold several hashes (POLLEN_TRUSTED_APPS is one variable for the list).
  const trustedApps = o.trustedApp
    ?.flatMap((v) => v.split(/[\s,]+/))
    .filter(Boolean)
    .map((h) => h.trim().toLowerCase());
  for (const h of trustedApps ?? [])
    if (!/^sha256:[0-9a-f]{64}$/.test(h))
      throw new PollenError(
        'INVALID_ARGUMENT',
        `--trusted-app takes sha256:HEX as \`pollen build\` prints it (got "${h}")`,
      );
  const interval = Number(o.heartbeatInterval);
  if (!Number.isFinite(interval) || interval < 1)
    throw new PollenError('INVALID_ARGUMENT', '--heartbeat-interval takes seconds (>= 1)');
  const name = o.name ?? kit?.config.name ?? (tls && certificateName(tls.cert)) ?? 'supernode';
  // This command reports connection changes (the node's log then keeps them at debug level): the
  // first connection is its result, the later ones a progress line each.
  let connections = 0;
  const node = await startSuperNode({
    superlink: `${tls ? 'https' : 'http'}://${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`,
    tls,
    name,
    authKey,
    nodeConfig: parseConfigPairs(o.nodeConfig, '--node-config'),
    trustedApps,
    ...(o.python !== undefined && { python: o.python }),
    resources,
    shareGpus: o.shareGpus === true,
    workDir: o.workDir,
    clientAppIo: parseAddress(o.clientappioAddress, '--clientappio-address'),
    metrics: opsListen(o.metricsAddress),
    heartbeatIntervalMs: interval * 1000,
    log: createLogger({ level: o.logLevel, format: o.logFormat, bindings: { supernode: name } }),
    onEvent: (e) => {
      if (e.kind === 'disconnected')
        out.progress(
          `SuperLink unreachable (${e.error}); next try in ${(e.retryInMs / 1000).toFixed(1)} s, at ${clockTime(Date.now() + e.retryInMs)}`,
        );
      else if (e.kind === 'connected' && connections++ > 0)
        out.progress(`connected again to ${superlink} as node ${e.nodeId}`);
    },
  });
  out.progress(`connecting to ${superlink} as ${name}`);
  // A refusal for good (not registered, revoked, another CA, a wrong address) ends the command
  // with its code, hint and exit code, before or after the node connected.
  const refused = node.failed.then((error) => ({ error }));
  const first = await untilSignalOr(Promise.race([node.ready.then((nodeId) => ({ nodeId })), refused]));
  const nodeId = 'value' in first && 'nodeId' in first.value ? first.value.nodeId : undefined;
  let error = 'value' in first && 'error' in first.value ? first.value.error : undefined;
  if (nodeId) {
    out.result({ nodeId, name, superlink, metrics: node.opsUrl ?? null }, (d) => [
      `${bold('SuperNode')} ${d.name} connected as node ${d.nodeId} to ${d.superlink}`,
      `  Metrics/health  ${d.metrics ?? 'off'}`,
      dim('  Ctrl-C to stop'),
    ]);
    const then = await untilSignalOr(refused);
    if ('value' in then) error = then.value.error;
  }
  out.progress(error ? 'the SuperLink refused this SuperNode; stopping' : 'stopping the SuperNode');
  await node.close();
  if (!error) return;
  if (!nodeId) throw error;
  // The result document is out already: the error goes to stderr, so stdout keeps one document.
  throw out.quiet().failure({}, error, () => []);
}

/** HH:MM:SS of an epoch time, local: when the next try is, in the operator's terms. */
const clockTime = (ms: number): string => new Date(ms).toTimeString().slice(0, 8);

/** The node key file, or a precise error when it is not there. */
function readNodeKey(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new PollenError('FILE_NOT_FOUND', `Cannot read the SuperNode key ${path}`, {
      cause: e,
      hint: 'Give the private key whose KEY.pub the federation admin registered (--auth-supernode-private-key, POLLEN_AUTH_SUPERNODE_PRIVATE_KEY); `ssh-keygen -t ecdsa -b 384 -N "" -f KEY` makes a new one, which must then be registered.',
    });
  }
}

/**
 * `pollen start CLIENT_KIT` (the kit's start.sh), once enrolled: the SuperNode of the kit, with
 * the settings `pollen supernode` takes from the environment (`env`).
 */
export async function runKitSuperNode(
  { kit, out }: ParticipantContext,
  env: SuperNodeOptions,
): Promise<ParticipantOutcome> {
  await runSuperNode({ ...env, kit: kit.dir, workDir: `${kit.dir}/local/supernode` }, out.quiet());
  return { status: 'stopped' };
}
