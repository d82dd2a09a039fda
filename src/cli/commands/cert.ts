import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type Command, Option } from 'commander';
import { PollenError } from '../../errors.js';
import { initCa, loadCa } from '../../pki/ca.js';
import { KEY_TYPES, type KeyType } from '../../pki/keys.js';
import { CERT_TYPES, type CertType } from '../../pki/profiles.js';
import { createSiteCertificate, readIssued, revokeLocal, writeLocalCrl } from '../../pki/site.js';
import { writeSecretFile } from '../../util/files.js';
import { action, requireCaPath } from '../command.js';
import { caOption, caPassphraseOption, certServiceOption } from '../env-options.js';
import { bold, dim } from '../output.js';

const collect = (v: string, prev: string[] = []) => [...prev, v];
const positiveInt = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0)
    throw new PollenError('INVALID_ARGUMENT', `${name} must be a positive whole number of days`);
  return n;
};

/** The root key passphrase: from --passphrase-file, else POLLEN_CA_PASSPHRASE (`--ca-passphrase`). */
export function readPassphrase(o: { passphraseFile?: string; caPassphrase?: string }): string | undefined {
  if (o.passphraseFile) {
    const p = readFileSync(o.passphraseFile, 'utf8').replace(/\r?\n$/, '');
    if (!p) throw new PollenError('INVALID_ARGUMENT', `The passphrase file ${o.passphraseFile} is empty`);
    return p;
  }
  return o.caPassphrase || undefined;
}

/** An API key: 256 random bits, printable; services keep only its SHA-256. */
export function newApiKey(): { key: string; sha256: string } {
  const key = `pollen_${randomBytes(32).toString('base64url')}`;
  return { key, sha256: createHash('sha256').update(key).digest('hex') };
}

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
    .action(
      action<{
        name: string;
        output: string;
        keyType: KeyType;
        validity: number;
        passphraseFile?: string;
        caPassphrase?: string;
      }>(async (o, out) => {
        out.progress(`creating the CA for ${o.name} in ${o.output}`);
        const meta = await initCa({
          name: o.name,
          dir: o.output,
          keyType: o.keyType,
          validityDays: o.validity,
          passphrase: readPassphrase(o),
        });
        out.result(meta, (m) => [
          `${bold('Created the project CA')} ${m.name} in ${m.dir}`,
          `  root fingerprint   ${m.rootFingerprint}`,
          `  root key           ${m.rootEncrypted ? 'encrypted with your passphrase' : dim('not encrypted (use --passphrase-file)')}`,
          `  key type           ${m.keyType} (intermediate signs with ${m.keyType === 'rsa-3072' ? 'rsa-3072' : 'ec-p256'})`,
          '',
          'Next: pollen cert site -n server1 -t server -c ' + m.dir + ' --host server.example.com',
        ]);
      }),
    );

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
    .action(
      action<{
        name: string;
        type: CertType;
        ca?: string;
        host: string[];
        org?: string;
        role?: string;
        output: string;
        validity: number;
        keyType: KeyType;
        force?: boolean;
      }>(async (o, out) => {
        const admRoles = ['lead', 'member', 'org_admin', 'project_admin'];
        if (o.type === 'admin' && o.role && !admRoles.includes(o.role))
          throw new PollenError('INVALID_ARGUMENT', `--role must be one of ${admRoles.join(', ')}`);
        const ca = await loadCa(requireCaPath(o.ca));
        const r = await createSiteCertificate(ca, {
          name: o.name,
          type: o.type,
          hosts: o.host,
          org: o.org,
          role: o.role ?? (o.type === 'admin' ? 'lead' : undefined),
          outDir: o.output,
          validityDays: o.validity,
          keyType: o.keyType,
          force: o.force,
        });
        out.result(
          {
            name: r.name,
            type: r.type,
            serial: r.serial,
            fingerprint: r.fingerprint,
            notAfter: r.notAfter.toISOString(),
            certificate: r.certPath,
            key: r.keyPath,
            rootCA: r.rootPath,
          },
          (d) => [
            `${bold('Issued')} ${d.type} certificate for ${d.name}`,
            `  certificate  ${d.certificate}`,
            `  key          ${d.key} (0600)`,
            `  root CA      ${d.rootCA}`,
            `  serial       ${d.serial}`,
            `  expires      ${d.notAfter}`,
            '',
            dim('Send these three files to the site over a secure channel.'),
          ],
        );
      }),
    );

  cert
    .command('list')
    .description('list the certificates `cert site` issued from a CA folder')
    .addOption(caOption())
    .action(
      action<{ ca?: string }>(async (o, out) => {
        const issued = readIssued(requireCaPath(o.ca));
        out.result({ issued }, (d) =>
          d.issued.length === 0
            ? ['This CA has issued no site certificates.']
            : d.issued.map(
                (r) =>
                  `${r.serial}  ${r.type.padEnd(6)} ${r.name}  expires ${r.notAfter}${r.revokedAt ? `  REVOKED ${r.revokedAt}` : ''}`,
              ),
        );
      }),
    );

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
    .action(
      action<{ ca?: string; serial: string[]; reason: 'unspecified' }>(async (o, out, names) => {
        if (names.length === 0 && o.serial.length === 0)
          throw new PollenError('USAGE', 'Say what to revoke: names or --serial HEX');
        const ca = await loadCa(requireCaPath(o.ca));
        const r = await revokeLocal(ca, { names, serials: o.serial, reason: o.reason });
        out.result(
          { revoked: r.revoked.map((x) => ({ name: x.name, serial: x.serial })), crl: r.crlPath },
          (d) => [
            ...d.revoked.map((x) => `${bold('revoked')} ${x.name} serial ${x.serial}`),
            `CRL written to ${d.crl}`,
          ],
        );
      }),
    );

  cert
    .command('crl')
    .description('write a fresh CRL for a CA folder (manual workflow; valid 7 days)')
    .addOption(caOption())
    .option('--days <days>', 'CRL lifetime in days', positiveInt('--days'), 7)
    .action(
      action<{ ca?: string; days: number }>(async (o, out) => {
        const ca = await loadCa(requireCaPath(o.ca));
        const path = await writeLocalCrl(ca, new Date(), o.days);
        out.result({ crl: path }, (d) => [`CRL written to ${d.crl}`]);
      }),
    );

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
      action<{ certService?: string }>(async (o, out, args) => {
        const { enrollKit } = await import('../../enrollment/enroll-client.js');
        const r = await enrollKit(args[0]!, {
          renew: 'now',
          certServiceUrl: o.certService,
          onProgress: (e) => out.progress(e.message),
        });
        if (r.action !== 'renewed')
          throw new PollenError(
            (r.renewalError?.code as 'UNAVAILABLE' | undefined) ?? 'NOT_ENROLLED',
            r.renewalError?.message ?? 'The kit has no certificate to renew; start it to enroll first',
          );
        out.result(
          {
            name: r.kit.config.name,
            serial: r.certificate.serial,
            notAfter: r.certificate.notAfter.toISOString(),
            renewAt: r.certificate.renewAt.toISOString(),
          },
          (d) => [
            `${bold('Renewed')} ${d.name}: serial ${d.serial}, valid until ${d.notAfter} (next renewal from ${d.renewAt})`,
          ],
        );
      }),
    );

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
    .action(
      action<{ output?: string }>(async (o, out) => {
        const { key, sha256 } = newApiKey();
        if (o.output) writeSecretFile(o.output, `${key}\n`);
        out.result(o.output ? { file: o.output, sha256 } : { apiKey: key, sha256 }, (d) =>
          o.output ? [`Wrote the API key to ${o.output} (0600)`, `  sha256 ${d.sha256}`] : [key],
        );
      }),
    );
}
