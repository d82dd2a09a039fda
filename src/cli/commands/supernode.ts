import { type Command, Option } from 'commander';
import { federationArg } from '../app-federation.js';
import { action, lazy, optionsFromEnvironment } from '../command.js';
import { addLogOptions, METRICS_ADDRESSES, metricsAddressOption } from '../env-options.js';
import { registerParticipantRunner } from '../participants.js';
import type { SuperNodeOptions } from '../supernode/run.js';

const superNodeList = lazy(() => import('../supernode/list.js'), 'superNodeList');
const superNodeRegister = lazy(() => import('../supernode/register.js'), 'superNodeRegister');
const runKitSuperNode = lazy(() => import('../supernode/run.js'), 'runKitSuperNode');
const runSuperNode = lazy(() => import('../supernode/run.js'), 'runSuperNode');
const superNodeUnregister = lazy(() => import('../supernode/unregister.js'), 'superNodeUnregister');

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** The options of `pollen supernode` (running one), with their environment variables. */
function supernodeOptions(cmd: Command): Command {
  return addLogOptions(cmd)
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
    .addOption(
      new Option(
        '--python <path>',
        "the interpreter of Python apps, e.g. a virtual environment's bin/python (default: python3 on PATH)",
      ).env('POLLEN_PYTHON'),
    )
    .addOption(
      new Option(
        '--resources <list>',
        'what runs get: cpu=N (POLLEN_CPUS, OMP_NUM_THREADS), gpu=M (GPUs 0 … M-1) or gpu=0,2 (those ids); each run its own GPUs',
      ).env('POLLEN_RESOURCES'),
    )
    .addOption(
      new Option('--share-gpus', 'let runs share GPUs (by default a GPU serves one run at a time)').env(
        'POLLEN_SHARE_GPUS',
      ),
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
    .addOption(metricsAddressOption(METRICS_ADDRESSES.supernode));
}

export function registerSuperNode(program: Command): void {
  // `pollen start CLIENT_KIT` (the kit's start.sh) enrolls, then runs the SuperNode with the
  // settings `pollen supernode` takes from the environment.
  registerParticipantRunner('client', (ctx) =>
    runKitSuperNode(ctx, optionsFromEnvironment<SuperNodeOptions>(supernodeOptions)),
  );
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
  pollen supernode --kit ./site-1 --python /opt/pollen-venv/bin/python --resources cpu=8,gpu=2
  pollen supernode register node.pub local      # an admin registers a node's key
  pollen supernode register node.pub local --site site-1   # ... usable only with site-1's certificate
  pollen supernode list local
  pollen supernode unregister 3f9c0a12b4d5e6f7 local

The SuperNode connects outbound only: sites open no inbound port. It keeps its node id across
restarts (the id comes from its certificate or its key), reconnects with backoff when the
SuperLink is away, and runs each run's ClientApp in its own process. Refused for good (key not
registered, certificate revoked or from another CA, a wrong address) it stops with the error's
code and hint: exit 5 (unauthorised) or 2 (a wrong address). See docs/federation.md.`,
    )
    .action(action<SuperNodeOptions>(runSuperNode));

  cmd
    .command('register <KEY_PUB> [APP_DIR] [FEDERATION]')
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
  pollen supernode register site-1.pub . prod    # Flower's form: the app folder first
  pollen supernode register site-1.pub cancer-study   # the node joins federation cancer-study on the default SuperLink

A registered key opens sessions only under the client certificate of its site: a SuperNode that
presents the key with another site's certificate is refused (NODE_IDENTITY_MISMATCH), and the
SuperLink logs both names. To move a key to another site, unregister it and register it again
with --site. \`pollen supernode list\` shows each key's site and how it was bound. Registering
a known key again with another federation adds the node to that one too (a node may serve
several); every node serves the federation \`default\`.`,
    )
    .action(
      action<{ name?: string; site?: string }>((o, out, [keyFile, a, b]) =>
        superNodeRegister({ ...o, keyFile: keyFile!, federation: federationArg(a, b) }, out),
      ),
    );

  cmd
    .command('list [APP_DIR] [FEDERATION]')
    .alias('ls')
    .description(
      'list SuperNodes: online, offline, registered (not connected yet) or unregistered (key removed: refused), and the site each key is bound to',
    )
    .action(
      action<object>((o, out, [a, b]) => superNodeList({ ...o, federation: federationArg(a, b) }, out)),
    );

  cmd
    .command('unregister <NODE_ID> [APP_DIR] [FEDERATION]')
    .description("remove a node's key: it is refused from now on, with no SuperLink restart")
    .action(
      action<object>((o, out, [nodeId, a, b]) =>
        superNodeUnregister({ ...o, nodeId: nodeId!, federation: federationArg(a, b) }, out),
      ),
    );
}
