import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type Command, Option } from 'commander';
import { PollenError } from '../../errors.js';
import { action, optionsFromEnvironment, untilSignal } from '../command.js';
import { parseConfigPairs } from '../config-pairs.js';
import { openControl, rpc } from '../control-client.js';
import { logLevelOption } from '../env-options.js';
import { bold, dim, type Output } from '../output.js';
import { parseAddress, resolveTls, type TlsFlags } from '../participant-tls.js';
import { registerParticipantRunner } from '../participants.js';

const collect = (v: string, prev: string[] = []) => [...prev, v];

interface RunOpts extends TlsFlags {
  superlink?: string;
  name?: string;
  authSupernodePrivateKey?: string;
  nodeConfig: string[];
  trustedApp?: string[];
  workDir: string;
  clientappioAddress: string;
  heartbeatInterval: string;
  logLevel: string;
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

/** How `supernode list` shows a key's site binding. */
function siteText(n: { registered: boolean; site: string | null; siteBoundBy: string | null }): string {
  if (!n.site) return n.registered ? `  site ${dim('(bound on first use)')}` : '';
  const how = n.siteBoundBy?.startsWith('admin:') ? `named by ${n.siteBoundBy.slice(6)}` : 'first use';
  return `  site ${n.site} ${dim(`(${how})`)}`;
}

/** The options of `pollen supernode` (running one), with their environment variables. */
function supernodeOptions(cmd: Command): Command {
  return cmd
    .option('--kit <dir>', 'an enrolled client startup kit (certificate, key, root CA, SuperLink address)')
    .option('--cert <file>', 'client certificate PEM (instead of --kit)')
    .option('--key <file>', 'its private key PEM')
    .option('--root-ca <file>', 'the project root CA PEM')
    .option('--chain <file>', 'intermediate CA PEM sent with the certificate')
    .option('--insecure', 'no TLS (development only)')
    .option('--superlink <host:port>', 'Fleet API address (default: the kit endpoint)')
    .option('--name <name>', 'node name in listings (default: the certificate name)')
    .addOption(
      new Option(
        '--auth-supernode-private-key <file>',
        'OpenSSH ECDSA key (ssh-keygen -t ecdsa -b 384) for SuperLinks that authenticate node keys',
      ).env('POLLEN_AUTH_SUPERNODE_PRIVATE_KEY'),
    )
    .addOption(
      new Option(
        '--node-config <k=v>',
        'node config for the ClientApp, e.g. data-path=/data/part0 (repeatable; the variable holds k=v pairs)',
      )
        .env('POLLEN_NODE_CONFIG')
        .argParser(collect)
        .default([]),
    )
    .addOption(
      new Option(
        '--trusted-app <sha256:HASH>',
        'run only app bundles with this hash (repeatable; the variable holds a list); by default every app of the federation runs',
      )
        .env('POLLEN_TRUSTED_APPS')
        .argParser(collect),
    )
    .option('--work-dir <dir>', 'unpacked apps and chunks in transit', './supernode')
    .option(
      '--clientappio-address <host:port>',
      'ClientAppIo for the app processes (loopback)',
      '127.0.0.1:0',
    )
    .addOption(
      new Option('--heartbeat-interval <seconds>', 'how often to tell the SuperLink this node is alive')
        .env('POLLEN_HEARTBEAT_INTERVAL')
        .default('10'),
    )
    .addOption(logLevelOption());
}

export function registerSuperNode(program: Command): void {
  // `pollen start CLIENT_KIT` (the kit's start.sh) enrolls, then runs the SuperNode with the
  // settings `pollen supernode` takes from the environment.
  registerParticipantRunner('client', async ({ kit, out }) => {
    await runSuperNode(
      {
        ...optionsFromEnvironment<RunOpts>(supernodeOptions),
        kit: kit.dir,
        workDir: `${kit.dir}/local/supernode`,
      },
      out.quiet(),
    );
    return { status: 'stopped' };
  });
  const cmd = supernodeOptions(
    program
      .command('supernode')
      .description("run a SuperNode at a site (trains on the site's data), or manage node keys"),
  )
    .addHelpText(
      'after',
      `
Examples:
  pollen supernode --kit ./site-1 --node-config partition-id=0 --node-config num-partitions=3
  pollen supernode --kit ./site-1 --auth-supernode-private-key ~/.ssh/pollen_node
  pollen supernode register node.pub local      # an admin registers a node's key
  pollen supernode register node.pub local --site site-1   # ... usable only with site-1's certificate
  pollen supernode list local
  pollen supernode unregister 3f9c0a12b4d5e6f7 local

The SuperNode connects outbound only: sites open no inbound port. It keeps its node id across
restarts (the id comes from its certificate or its key), reconnects with backoff when the
SuperLink is away, and runs each run's ClientApp in its own process.`,
    )
    .action(
      action<RunOpts>(async (o, out) => {
        await runSuperNode(o, out);
      }),
    );

  cmd
    .command('register <KEY_PUB> [FEDERATION]')
    .description("register a SuperNode's OpenSSH public key; prints its node id")
    .option('--name <name>', 'a name for listings (default: the key comment)')
    .option(
      '--site <name>',
      "the client certificate name (the site) the key is bound to (default: the site of the key's first activation)",
    )
    .addHelpText(
      'after',
      `
Examples:
  pollen supernode register site-1.pub prod --site site-1
  pollen supernode register site-1.pub prod      # bound to the first site that uses it

A registered key opens sessions only under the client certificate of its site: a SuperNode that
presents the key with another site's certificate is refused (NODE_IDENTITY_MISMATCH), and the
SuperLink logs both names. To move a key to another site, unregister it and register it again
with --site. \`pollen supernode list\` shows each key's site and how it was bound.`,
    )
    .action(
      action<{ name?: string; site?: string }>(async (o, out, args) => {
        const [keyFile, federation] = args as [string, string | undefined];
        let line: string;
        try {
          line = readFileSync(keyFile, 'utf8').trim();
        } catch (e) {
          throw new PollenError('FILE_NOT_FOUND', `Cannot read ${keyFile}`, { cause: e });
        }
        const s = openControl(federation, o.config);
        try {
          const { nodeId } = await rpc(
            s.control.registerNode({ publicKey: line, name: o.name ?? '', site: o.site ?? '' }),
          );
          out.result({ nodeId, federation: s.federation.name, site: o.site ?? null }, (d) => d.nodeId);
        } finally {
          s.close();
        }
      }),
    );

  cmd
    .command('list [FEDERATION]')
    .alias('ls')
    .description('list SuperNodes: registered, online, offline, and the site each key is bound to')
    .action(
      action<object>(async (o, out, args) => {
        const s = openControl(args[0], o.config);
        try {
          const res = await rpc(s.control.listNodes({}));
          const nodes = res.nodes.map((n) => ({
            nodeId: n.nodeId,
            name: n.name,
            status: n.status,
            registered: n.registered,
            lastSeenAt: n.lastSeenAt ? new Date(Number(n.lastSeenAt)).toISOString() : null,
            site: n.site || null,
            siteBoundBy: n.siteBoundBy || null,
            siteBoundAt: n.siteBoundAt ? new Date(Number(n.siteBoundAt)).toISOString() : null,
          }));
          out.result({ federation: s.federation.name, nodeAuth: res.nodeAuth, nodes }, (d) => [
            `${bold(`${d.nodes.length} node(s)`)} in ${d.federation}${d.nodeAuth ? ' (registered keys only)' : ''}`,
            ...d.nodes.map(
              (n) =>
                `  ${n.nodeId}  ${n.status.padEnd(10)} ${n.name}${siteText(n)}${n.lastSeenAt ? dim(`  last seen ${n.lastSeenAt}`) : ''}`,
            ),
          ]);
        } finally {
          s.close();
        }
      }),
    );

  cmd
    .command('unregister <NODE_ID> [FEDERATION]')
    .description("remove a node's key: it is refused from now on, with no SuperLink restart")
    .action(
      action<object>(async (o, out, args) => {
        const [nodeId, federation] = args as [string, string | undefined];
        const s = openControl(federation, o.config);
        try {
          await rpc(s.control.unregisterNode({ nodeId }));
          out.result({ nodeId, unregistered: true }, (d) => `unregistered ${d.nodeId}`);
        } finally {
          s.close();
        }
      }),
    );
}

export async function runSuperNode(o: RunOpts, out: Output): Promise<void> {
  const { tls, kit } = resolveTls(o, 'client', out);
  const { default: pino } = await import('pino');
  const { startSuperNode } = await import('../../supernode/supernode.js');
  const { parseSshPrivateKey } = await import('../../pki/openssh.js');
  let superlink = o.superlink;
  if (!superlink && kit) superlink = `${kit.config.endpoint.host}:${kit.config.endpoint.port}`;
  if (!superlink) throw new PollenError('USAGE', 'Give --superlink HOST:PORT (or a kit with an endpoint)');
  const address = parseAddress(superlink, '--superlink');
  const authKey = o.authSupernodePrivateKey
    ? parseSshPrivateKey(readFileSync(o.authSupernodePrivateKey))
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
  const node = await startSuperNode({
    superlink: `${tls ? 'https' : 'http'}://${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`,
    tls,
    name,
    authKey,
    nodeConfig: parseConfigPairs(o.nodeConfig, '--node-config'),
    trustedApps,
    workDir: o.workDir,
    clientAppIo: parseAddress(o.clientappioAddress, '--clientappio-address'),
    heartbeatIntervalMs: interval * 1000,
    log: pino({ level: o.logLevel }, pino.destination(2)),
    onEvent: (e) => {
      if (e.kind === 'disconnected')
        out.progress(`SuperLink unreachable (${e.error}); retrying in ${(e.retryInMs / 1000).toFixed(1)} s`);
    },
  });
  out.progress(`connecting to ${superlink} as ${name}`);
  const nodeId = await Promise.race([node.ready, untilSignal(async () => {}).then(() => '')]);
  if (nodeId) {
    out.result({ nodeId, name, superlink }, (d) => [
      `${bold('SuperNode')} ${d.name} connected as node ${d.nodeId} to ${d.superlink}`,
      dim('  Ctrl-C to stop'),
    ]);
    await untilSignal(async () => {});
  }
  out.progress('stopping the SuperNode');
  await node.close();
}
