import { type Command, Option } from 'commander';
import { PollenError } from '../../errors.js';
import { CERT_TYPES, KEY_TYPES } from '../../pki/vocabulary.js';
import type { CertApiKeyOptions } from '../cert/api-key.js';
import type { CertCrlOptions } from '../cert/crl.js';
import type { CertInitOptions } from '../cert/init.js';
import type { CertListOptions } from '../cert/list.js';
import type {
  CertRotateCertServiceOptions,
  CertRotateIntermediateOptions,
  CertRotateTokenKeyOptions,
} from '../cert/rotate.js';
import type { CertSiteOptions } from '../cert/site.js';
import { action, lazy, namesAction } from '../command.js';
import { caOption, caPassphraseOption, certServiceOption } from '../env-options.js';

const certApiKey = lazy(() => import('../cert/api-key.js'), 'certApiKey');
const certCrl = lazy(() => import('../cert/crl.js'), 'certCrl');
const certInit = lazy(() => import('../cert/init.js'), 'certInit');
const certList = lazy(() => import('../cert/list.js'), 'certList');
const certRenew = lazy(() => import('../cert/renew.js'), 'certRenew');
const certRevoke = lazy(() => import('../cert/revoke.js'), 'certRevoke');
const certRotateIntermediate = lazy(() => import('../cert/rotate.js'), 'certRotateIntermediate');
const certRotateTokenKey = lazy(() => import('../cert/rotate.js'), 'certRotateTokenKey');
const certRotateCertService = lazy(() => import('../cert/rotate.js'), 'certRotateCertService');
const certRotateSuperLink = lazy(() => import('../cert/rotate.js'), 'certRotateSuperLink');
const certSite = lazy(() => import('../cert/site.js'), 'certSite');

const collect = (v: string, prev: string[] = []) => [...prev, v];
const positiveInt = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0)
    throw new PollenError('INVALID_ARGUMENT', `${name} must be a positive whole number of days`);
  return n;
};

export function registerCert(program: Command): void {
  const cert = program
    .command('cert')
    .description('project CA and participant certificates (manual workflow)');

  cert
    .command('init')
    .description('create the project root CA, its online intermediate CA and the token-signing key')
    .requiredOption('-n, --name <name>', 'project name (goes into the CA subject)')
    .requiredOption('-o, --output <dir>', 'folder for the CA files (must not hold a CA already)')
    .addOption(new Option('--key-type <type>', 'root key type').choices(KEY_TYPES).default('ec-p384'))
    .option('--validity <days>', 'root validity in days', positiveInt('--validity'), 3650)
    .option('--passphrase-file <file>', 'encrypt rootCA.key with this passphrase (or POLLEN_CA_PASSPHRASE)')
    .addOption(caPassphraseOption())
    .addHelpText(
      'after',
      `
Creates in DIR:
  rootCA.pem            root certificate: give it to every participant
  rootCA.key            root key (0600; encrypted with a passphrase): keep it offline
  intermediateCA.pem/.key  the online CA that signs site certificates and CRLs
  token.key             signs enrollment tokens (never the CA key)
  ca.json               name, key type and fingerprints

Example:
  pollen cert init -n "My Project" -o ./ca --passphrase-file ./ca-pass.txt`,
    )
    .action(action<CertInitOptions>(certInit));

  cert
    .command('site')
    .description('issue a key and certificate for a server, client, relay or admin')
    .requiredOption('-n, --name <name>', 'participant name (site name or user e-mail)')
    .addOption(new Option('-t, --type <type>', 'participant type').choices(CERT_TYPES).makeOptionMandatory())
    .addOption(caOption())
    .option('--host <host>', 'DNS name or IP address for the certificate (repeatable)', collect, [])
    .option('--org <org>', 'organisation')
    .option(
      '--role <role>',
      'role carried in the certificate (admins: lead, member, org_admin, project_admin)',
    )
    .option('-o, --output <dir>', 'output folder', '.')
    .option('--validity <days>', 'validity in days', positiveInt('--validity'), 90)
    .addOption(new Option('--key-type <type>', 'key type').choices(KEY_TYPES).default('ec-p256'))
    .option('--force', 'replace existing NAME.crt/NAME.key')
    .addHelpText(
      'after',
      `
Writes NAME.crt (certificate then intermediate), NAME.key (0600) and rootCA.pem to the output folder.

Examples:
  pollen cert site -n server1 -t server -c ./ca --host server.example.com --host 10.0.0.5
  pollen cert site -n hospital-1 -t client -c ./ca --org "Hospital One"
  pollen cert site -n admin@example.com -t admin --role project_admin -c ./ca`,
    )
    .action(action<CertSiteOptions>(certSite));

  cert
    .command('list')
    .description('list the certificates `cert site` issued from a CA folder')
    .addOption(caOption())
    .action(action<CertListOptions>(certList));

  cert
    .command('revoke')
    .description('revoke certificates issued by `cert site` and write CA_DIR/crl.pem (manual workflow)')
    .argument('[names...]', 'participant names (every unrevoked certificate of each)')
    .addOption(caOption())
    .option('--serial <hex>', 'a certificate serial (repeatable)', collect, [])
    .addOption(
      new Option('--reason <reason>', 'CRL reason')
        .choices(['unspecified', 'keyCompromise', 'superseded', 'cessationOfOperation'])
        .default('unspecified'),
    )
    .addHelpText(
      'after',
      `
Distribute the new CRL to the servers that check client certificates. With a Certificate
Service, use \`pollen enrollment revoke\` instead: its CRL is served at /v1/crl.

Example:
  pollen cert revoke hospital-3 -c ./ca --reason keyCompromise`,
    )
    .action(namesAction(certRevoke));

  cert
    .command('crl')
    .description('write a fresh CRL for a CA folder (manual workflow; valid 7 days)')
    .addOption(caOption())
    .option('--days <days>', 'CRL lifetime in days', positiveInt('--days'), 7)
    .action(action<CertCrlOptions>(certCrl));

  cert
    .command('renew')
    .description(
      "renew a kit's certificate now, over mutual TLS with the current one (sites also renew by themselves at two thirds of the lifetime)",
    )
    .argument('<KIT_DIR>', 'the startup kit whose startup/NAME.crt to renew')
    .addOption(certServiceOption("Certificate Service URL (default: the kit's enrollment.json)"))
    .addHelpText(
      'after',
      `
A new key is made, a CSR sent with the current certificate as the TLS client certificate, and the
new key and certificate replace the old ones atomically. A revoked or expired certificate cannot
be renewed: enroll again with a new token.

Example:
  pollen cert renew ./hospital-1`,
    )
    .action(
      action<{ certService?: string }>((o, out, [kitDir]) => certRenew({ ...o, kitDir: kitDir! }, out)),
    );

  registerRotate(cert);

  cert
    .command('api-key')
    .description('generate an API key for the Certificate Service (256 random bits)')
    .option('-o, --output <file>', 'write the key to this file (0600) instead of printing it')
    .addHelpText(
      'after',
      `
The service keeps only the key's SHA-256. Start it with --api-key-file FILE (or POLLEN_API_KEY);
give the key to admins for token and enrollment commands (--api-key or POLLEN_API_KEY).

Example:
  pollen cert api-key -o api_key.txt`,
    )
    .action(action<CertApiKeyOptions>(certApiKey));
}

function registerRotate(cert: Command): void {
  const rotate = cert
    .command('rotate')
    .description('rotate CA material without downtime: old and new overlap, nothing restarts on a site');

  rotate
    .command('intermediate')
    .description(
      'a new intermediate CA signed by the offline root; the old one stays valid for what it signed',
    )
    .addOption(caOption())
    .option('--root-key <file>', 'the offline root key (default CA_DIR/rootCA.key)')
    .option('--passphrase-file <file>', 'the root key passphrase (or POLLEN_CA_PASSPHRASE)')
    .addOption(caPassphraseOption())
    .addHelpText(
      'after',
      `
The root key is needed for this only: bring it on the removable disk it is kept on and give
--root-key. The old intermediate keeps its files (intermediateCA-FINGERPRINT.pem/.key) and stays in
chain.pem until it expires, so every certificate it signed stays valid; new ones are signed by
the new intermediate. A running Certificate Service takes it up within seconds.

Example:
  pollen cert rotate intermediate -c ./ca --root-key /media/offline/rootCA.key --passphrase-file ./ca-pass.txt`,
    )
    .action(action<CertRotateIntermediateOptions>(certRotateIntermediate));

  rotate
    .command('token-key')
    .description(
      'sign new enrollment tokens with a new key; tokens already issued stay valid until they expire',
    )
    .addOption(caOption())
    .option(
      '--overlap <duration>',
      'how long the old key still verifies tokens (e.g. 30d); default 366d, the longest a token may live',
    )
    .addHelpText(
      'after',
      `
token.key is replaced; the old key's public part moves to token-keys.json (its private part is
destroyed) and verifies the tokens it signed until the overlap ends. A token's kid picks its key.
A running Certificate Service takes the change up within seconds.

Example:
  pollen cert rotate token-key -c ./ca`,
    )
    .action(action<CertRotateTokenKeyOptions>(certRotateTokenKey));

  rotate
    .command('cert-service')
    .description("re-issue the Certificate Service's own TLS certificate; the running service takes it up")
    .addOption(caOption())
    .option(
      '-w, --workspace <dir>',
      'the service workspace (`pollen cert-service serve -w`)',
      './cert-service',
    )
    .addHelpText(
      'after',
      `
A new key and certificate for the host names the service was started with replace
WORKSPACE/tls/cert-service.{crt,key}; every worker presents them to new connections within
seconds. Sites trust the project CA, not this certificate: nothing changes for them.

Example:
  pollen cert rotate cert-service -c ./ca -w ./cert-service`,
    )
    .action(action<CertRotateCertServiceOptions>(certRotateCertService));

  rotate
    .command('superlink')
    .description("renew the SuperLink's certificate now; the running SuperLink takes it up")
    .argument('<KIT_DIR>', 'the server kit the SuperLink runs from')
    .addOption(certServiceOption("Certificate Service URL (default: the kit's enrollment.json)"))
    .addHelpText(
      'after',
      `
The kit's key and certificate are replaced (renewal over mutual TLS, as \`pollen cert renew\`); the
SuperLink presents the new certificate to new connections within seconds, open connections and
runs carry on. With hand-issued files (--cert/--key), re-issue them with \`pollen cert site --force\`:
the SuperLink watches those files the same way.

Example:
  pollen cert rotate superlink ./server1`,
    )
    .action(
      action<{ certService?: string }>((o, out, [kitDir]) =>
        certRotateSuperLink({ ...o, kitDir: kitDir! }, out),
      ),
    );
}
