import { type Command, Option } from 'commander';
import { ADMIN_ROLES, KIT_TYPES } from '../../enrollment/kit/vocabulary.js';
import { action, lazy } from '../command.js';
import type { PackageOptions } from '../package/package.js';
import type { PackageVerifyOptions } from '../package/verify.js';

const packageKit = lazy(() => import('../package/package.js'), 'packageKit');
const packageVerify = lazy(() => import('../package/verify.js'), 'packageVerify');

const HELP = `
Layout (FLARE's generic package, Pollen names):
  NAME/startup/fed_<type>.json   participant config (name, org, role, endpoint, certificate paths)
  NAME/startup/start.sh          start in the background (log: NAME/log.txt); sub_start.sh supervises
  NAME/startup/stop.sh           stop it and everything it started (its process group)
  NAME/startup/enrollment.json   Certificate Service URL and root pin (with --cert-service)
  NAME/startup/enrollment_token  the token, mode 0600 (with --token)
  NAME/startup/manifest.json     every file's SHA-256; signed (manifest.sig) when a CA is at hand
  NAME/local/*.default           site settings to copy and edit
  NAME/transfer/, NAME/readme.txt

A kit never contains a private key. Sign kits with the project CA (-c or POLLEN_CA_PATH) so sites
can check them: pollen package verify NAME --root-fingerprint sha256:... (give the fingerprint to
the site out of band: the pins inside a kit cannot vouch for the kit itself).

Examples:
  pollen package -n hospital-1 -e grpcs://superlink.example.com:9092 -c ./ca
  pollen package -n superlink.example.com -t server -e grpcs://0.0.0.0:9092:9093 -c ./ca
  pollen package -n alice@example.com -t admin -e grpcs://superlink.example.com:9092:9093 --role lead
  pollen package -n hospital-1 -e grpcs://superlink:9092 --cert-service https://certs:8443 --token "$TOKEN"
  pollen package -n hospital-1 -e grpcs://superlink:9092 -c ./ca --requirements requirements.txt
  pollen package -n superlink -t server -e grpcs://0.0.0.0:9092:9093 --cert-service https://certs:8443 \\
      --token "$(pollen token generate -s superlink --server --host superlink.example.com -c ./ca)" \\
      --host superlink.example.com

A server or relay enrolled through the Certificate Service gets a certificate for the DNS names and
IP addresses its token names (token generate --host); --host checks the token names each one.`;

const HELP_VERIFY = `
Pins: a valid signature only shows the kit is intact under the root CA it carries; a kit replaced
wholesale (another CA, manifest, enrollment.json, token) is just as intact. Only a pin you got
independently of the kit ties it to the project: --root-fingerprint from the project admin, or a
token you were given yourself (--token, POLLEN_ENROLLMENT_TOKEN). The kit's own
startup/enrollment_token and enrollment.json are checked but never count: without an independent
pin the result says "pinned": false and a warning is printed; --require-pin makes that an error
(KIT_UNPINNED).

Global option: --json prints the result (or the error) as JSON.

Examples:
  pollen package verify ./hospital-1 --root-fingerprint sha256:... --require-pin`;

export function registerPackage(program: Command): void {
  const cmd = program
    .command('package')
    .description('make a startup kit for a client, server, relay or admin (FLARE `nvflare package`)')
    .option('-n, --name <NAME>', 'participant name (site name, relay name, or an admin e-mail)')
    .option('-e, --endpoint <URI>', 'SCHEME://HOST:PORT[:ADMIN_PORT] (scheme grpc, grpcs, https or tcp)')
    .addOption(new Option('-t, --type <TYPE>', 'kit type').choices(KIT_TYPES).default('client'))
    .option('-o, --output <DIR>', 'the kit folder (default ./NAME)')
    .option('-w, --workspace <DIR>', 'put the kit at WORKSPACE/NAME')
    .option('--org <ORG>', 'organisation (default: org)')
    .addOption(
      new Option('--role <ROLE>', 'admin kits: role (default lead, or the token role)').choices(ADMIN_ROLES),
    )
    .addOption(
      new Option(
        '--cert-service <URL>',
        'Certificate Service for auto-enrollment (writes enrollment.json)',
      ).env('POLLEN_CERT_SERVICE_URL'),
    )
    .option(
      '--token <TOKEN>',
      'enrollment token (or a file holding it), saved as startup/enrollment_token (0600)',
    )
    .addOption(
      new Option('-c, --ca <CA_DIR>', 'CA folder whose intermediate signs the kit manifest').env(
        'POLLEN_CA_PATH',
      ),
    )
    .option('--listening-host <HOST>', 'relay/server: address to listen on (relay default localhost)')
    .option('--listening-port <PORT>', 'relay/server: port to listen on (relay default 9092)')
    .option(
      '--host <HOST>',
      'relay/server: a DNS name or IP address it is reached at (repeatable); the --token must name each',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option(
      '--requirements <FILE>',
      "client/server kits: a pip requirements file the kit carries; start.sh checks the site's Python environment against it",
    )
    .option('--force', 'write into an existing kit folder (generated files are replaced)')
    .addHelpText('after', HELP)
    .action(action<PackageOptions>(packageKit));

  cmd
    .command('verify <KIT_DIR>')
    .description('check a startup kit: manifest signature, signer chain, root pin, every file')
    // `package`'s own options (-n, -e, --cert-service, …) do not apply here: do not list them.
    .configureHelp({ showGlobalOptions: false })
    .option('--root-fingerprint <FP>', 'the root CA fingerprint you were given out of band (sha256:...)')
    .addOption(
      new Option(
        '--token <TOKEN>',
        'a token you were given (or a file outside the kit holding it): its root pin counts as independent',
      ).env('POLLEN_ENROLLMENT_TOKEN'),
    )
    .option('--allow-unsigned', 'accept a kit without a signature (files are still checked)')
    .option(
      '--require-pin',
      'fail (KIT_UNPINNED) unless --root-fingerprint or a token you were given vouches for the kit',
    )
    .addHelpText('after', HELP_VERIFY)
    .action(
      action<Omit<PackageVerifyOptions, 'kitDir'>>((o, out, [kitDir]) =>
        packageVerify({ ...o, kitDir: kitDir! }, out),
      ),
    );
}
