import { type Command, Option } from 'commander';
import { AUDIT_CHECKPOINT_HELP } from '../audit/interval.js';
import { action, lazy, optionsFromEnvironment, valuesFrom } from '../command.js';
import {
  addLogOptions,
  certServiceOption,
  METRICS_ADDRESSES,
  metricsAddressOption,
  proxyProtocolOption,
} from '../env-options.js';
import { addIdentityOptions } from '../identity-options.js';
import { registerParticipantRunner } from '../participants.js';
import { addLimitOptions } from '../superlink/limits.js';
import type { SuperLinkOptions } from '../superlink/run.js';

const runKitSuperLink = lazy(() => import('../superlink/run.js'), 'runKitSuperLink');
const superLink = lazy(() => import('../superlink/run.js'), 'superLink');

/** The options of `pollen superlink`, with their environment variables. */
function superlinkOptions(cmd: Command): Command {
  cmd
    .option('--kit <dir>', 'an enrolled server startup kit (certificate, key, root CA)')
    .option('--cert <file>', 'server certificate PEM (instead of --kit)')
    .option('--key <file>', 'its private key PEM')
    .option('--root-ca <file>', 'the project root CA PEM: peers must chain to it')
    .option('--chain <file>', 'intermediate CA PEM sent with the certificate')
    .option('--insecure', 'no TLS and no authentication (development only)')
    .option('--state-dir <dir>', 'runs, nodes, chunks and unpacked apps', './superlink')
    .option('--database <url>', 'store: a SQLite path (default STATE_DIR/superlink.db) or postgres://…')
    .option('--fleet-address <host:port>', 'Fleet API (SuperNodes connect here, mutual TLS)', '0.0.0.0:9092')
    .option(
      '--control-address <host:port>',
      'Control API (pollen run/list/log/stop, node keys)',
      '0.0.0.0:9093',
    )
    .option(
      '--serverappio-address <host:port>',
      'ServerAppIo for ServerApp processes (loopback)',
      '127.0.0.1:9091',
    )
    .addOption(
      new Option(
        '--enable-supernode-auth',
        'admit only SuperNodes whose key was registered (pollen supernode register)',
      ).env('POLLEN_ENABLE_SUPERNODE_AUTH'),
    )
    .option('--crl <file>', 'revocation list PEM to enforce (re-read when it changes)')
    .addOption(
      certServiceOption('fetch the revocation list from this Certificate Service (every --crl-refresh)'),
    )
    .option('--crl-refresh <seconds>', 'how often the revocation list is re-read or fetched', '30')
    .option(
      '--chunk-memory <MiB>',
      "memory for runs' model chunks; past it they go to STATE_DIR/run-chunks",
      '1024',
    )
    .option('--project <name>', 'admit only certificates of this project (default: any from the root CA)')
    .addOption(
      new Option(
        '--python <path>',
        "the interpreter of Python apps (here their ServerApps), e.g. a virtual environment's bin/python (default: python3 on PATH)",
      ).env('POLLEN_PYTHON'),
    )
    .option('--audit-checkpoint-interval <seconds>', AUDIT_CHECKPOINT_HELP)
    .addOption(proxyProtocolOption('the Fleet and Control APIs'))
    .addOption(metricsAddressOption(METRICS_ADDRESSES.superlink));
  return addLogOptions(addIdentityOptions(addLimitOptions(cmd)));
}

export function registerSuperLink(program: Command): void {
  // `pollen start SERVER_KIT` enrolls, then runs the SuperLink on the kit's ports, with the
  // settings `pollen superlink` takes from the environment.
  registerParticipantRunner('server', (ctx) =>
    runKitSuperLink(ctx, optionsFromEnvironment<SuperLinkOptions>(superlinkOptions)),
  );
  superlinkOptions(
    program
      .command('superlink')
      .description(
        'run the SuperLink: Fleet API for SuperNodes, Control API for admins, a ServerApp process per run',
      ),
  )
    .addHelpText(
      'after',
      `
Examples:
  pollen superlink --kit ./server-kit --cert-service https://certs.example.com:8443
  pollen superlink --cert sl.crt --key sl.key --root-ca rootCA.pem --chain chain.pem --enable-supernode-auth
  pollen superlink --insecure --state-dir /tmp/sl         # local development only (loopback)

Every SuperNode must present a client certificate from the project CA that is not on the CRL;
a certificate revoked while connected is disconnected at the next CRL refresh. With
--enable-supernode-auth it must also sign with a registered OpenSSH key; registering and
unregistering keys takes effect at once, without a restart. Runs and nodes live in the store:
after a restart, nodes reconnect by themselves and a run that was in progress is marked failed.

Limits (docs/federation.md): each SuperNode holds at most --node-chunk-quota of a run's chunks,
has at most --node-reply-queue replies (--node-reply-queue-mib bytes) waiting for the ServerApp,
and makes at most --node-rate requests a second (bursts of --node-burst); chunk files stay under
--chunk-disk-budget. Past a limit the request is refused with its own code (CHUNK_QUOTA_EXCEEDED,
REPLY_QUEUE_FULL, RATE_LIMITED, STORAGE_FULL) while the other nodes go on; chunks nothing names
are collected within minutes. Set each in the environment too (POLLEN_NODE_CHUNK_QUOTA, …).
Logs go to stderr as JSON lines. Stop with Ctrl-C or SIGTERM.`,
    )
    .action(
      action<SuperLinkOptions>((o, out, _a, cmd) =>
        superLink({ ...o, defaulted: valuesFrom(cmd, 'default', 'fleetAddress', 'controlAddress') }, out),
      ),
    );
}
