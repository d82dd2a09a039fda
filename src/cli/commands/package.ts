import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { relative, resolve, sep } from 'node:path';
import { type Command, Option } from 'commander';
import {
  ADMIN_ROLES,
  configFileName,
  DEFAULT_BUILDERS,
  formatEndpoint,
  KIT_TYPES,
  kitFolder,
  planKit,
  resolveKitSpec,
  signingBuilder,
  writeKit,
} from '../../enrollment/kit.js';
import { type KitVerification, kitVerificationError, verifyKit } from '../../enrollment/kit-manifest.js';
import { PollenError } from '../../errors.js';
import { type LoadedCa, loadCa } from '../../pki/ca.js';
import { action } from '../command.js';

interface PackageFlags {
  name?: string;
  endpoint?: string;
  type: string;
  output?: string;
  workspace?: string;
  org?: string;
  role?: string;
  certService?: string;
  token?: string;
  ca?: string;
  listeningHost?: string;
  listeningPort?: string;
  force?: boolean;
}

interface VerifyFlags {
  rootFingerprint?: string;
  token?: string;
  allowUnsigned?: boolean;
  requirePin?: boolean;
}

const HELP = `
Layout (FLARE's generic package, Pollen names):
  NAME/startup/fed_<type>.json   participant config (name, org, role, endpoint, certificate paths)
  NAME/startup/start.sh          start in the background (log: NAME/log.txt); sub_start.sh supervises
  NAME/startup/stop.sh           stop it
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
  pollen package -n hospital-1 -e grpcs://superlink:9092 --cert-service https://certs:8443 --token "$TOKEN"`;

/** A token given as a value, or as the path of a file holding it. */
function tokenArgument(value: string): string {
  const v = value.trim();
  return existsSync(v) && statSync(v).isFile() ? readFileSync(v, 'utf8').trim() : v;
}

/** Is `value` the path of a file inside the kit folder (then it came with the kit)? */
function fileInside(value: string, dir: string): boolean {
  const v = value.trim();
  if (!existsSync(v) || !existsSync(dir)) return false;
  const file = realpathSync(resolve(v));
  const kit = realpathSync(resolve(dir));
  return file.startsWith(`${kit}${sep}`);
}

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
    .option('--force', 'write into an existing kit folder (generated files are replaced)')
    .addHelpText('after', HELP)
    .action(
      action<PackageFlags>(async (o, out) => {
        if (!o.name) throw new PollenError('USAGE', 'Missing -n/--name');
        if (!o.endpoint) throw new PollenError('USAGE', 'Missing -e/--endpoint');
        let ca: LoadedCa | null = null;
        if (o.ca) ca = await loadCa(o.ca);
        const { spec, warnings } = resolveKitSpec({
          name: o.name,
          type: o.type,
          endpoint: o.endpoint,
          ...(o.org !== undefined && { org: o.org }),
          ...(o.role !== undefined && { role: o.role }),
          ...(o.certService !== undefined && { certServiceUrl: o.certService }),
          ...(o.token !== undefined && { token: tokenArgument(o.token) }),
          ...(o.listeningHost !== undefined && { listeningHost: o.listeningHost }),
          ...(o.listeningPort !== undefined && { listeningPort: o.listeningPort }),
          ...(ca && { caRootFingerprint: ca.rootFingerprint }),
        });
        const dir = kitFolder(spec.name, {
          ...(o.output !== undefined && { output: o.output }),
          ...(o.workspace !== undefined && { workspace: o.workspace }),
        });
        const plan = await planKit(spec, [...DEFAULT_BUILDERS, signingBuilder(ca)]);
        writeKit(dir, plan, { force: Boolean(o.force) });
        for (const w of [...warnings, ...plan.warnings]) out.warn(w);
        const files = plan.files.map((f) => ({
          path: f.path,
          mode: `0${(f.mode & 0o777).toString(8)}`,
          size: f.content.length,
          ...(f.secret && { secret: true }),
        }));
        const result = {
          kit: dir,
          name: spec.name,
          type: spec.type,
          org: spec.org,
          role: spec.role,
          endpoint: formatEndpoint(spec.endpoint),
          config: `startup/${configFileName(spec.type)}`,
          signed: ca !== null,
          signer: ca ? ca.intermediate.subject : null,
          rootCaFingerprint: ca?.rootFingerprint ?? spec.enrollment?.rootCaFingerprint ?? null,
          enrollment: spec.enrollment
            ? { certServiceUrl: spec.enrollment.certServiceUrl, token: spec.token !== null }
            : spec.token !== null
              ? { certServiceUrl: null, token: true }
              : null,
          files,
          warnings: [...warnings, ...plan.warnings],
        };
        out.result(result, (r) => [
          `Startup kit for ${r.type} "${r.name}" written to ${r.kit}${r.signed ? ` (signed by ${r.signer})` : ' (unsigned)'}`,
          ...r.files.map((f) => `  ${f.mode}  ${f.path}`),
          ...(r.rootCaFingerprint
            ? [`Root CA: ${r.rootCaFingerprint} (give it to the site out of band to pin)`]
            : []),
          `Next: read ${relative(process.cwd(), `${r.kit}/readme.txt`) || 'readme.txt'}, then ./startup/start.sh in the kit folder.`,
        ]);
      }),
    );

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
      action<VerifyFlags>(async (o, out, args) => {
        const dir = args[0]!;
        let token: string | undefined;
        if (o.token !== undefined) {
          // The kit's own token file, passed by path, came with the kit: it stays a weak pin.
          if (fileInside(o.token, dir))
            out.warn(`--token ${o.token.trim()} is inside the kit: it is not an independent pin`);
          else token = tokenArgument(o.token);
        }
        const v = verifyKit(dir, {
          ...(o.rootFingerprint !== undefined && { rootFingerprint: o.rootFingerprint }),
          ...(token !== undefined && { token }),
        });
        const err = kitVerificationError(v, {
          allowUnsigned: Boolean(o.allowUnsigned),
          requirePin: Boolean(o.requirePin),
        });
        if (err) {
          if (!out.json) for (const line of problemLines(v)) out.progress(line);
          throw err;
        }
        if (!v.pinned) out.warn(unpinnedWarning(v));
        const { ok: intact, ...report } = v;
        out.result({ ...report, intact }, (r) => [
          `Kit ${r.dir} (${r.type} "${r.name}") is intact: ${r.files} files checked`,
          r.signature === 'valid'
            ? `  signed by ${r.signer?.subject} (${r.signer?.fingerprint})`
            : '  unsigned (accepted with --allow-unsigned)',
          ...(r.rootCaFingerprint ? [`  root CA ${r.rootCaFingerprint}`] : []),
          ...r.pins.map(
            (p) =>
              `  pin from ${p.source}${p.independent ? '' : ' (inside the kit, not independent)'}: ${p.fingerprint} ${p.matches ? 'matches' : 'not checked (no root)'}`,
          ),
          r.pinned
            ? '  pinned: the root CA matches a pin you gave'
            : '  NOT pinned: nothing independent of the kit vouches for its root CA',
        ]);
      }),
    );
}

function unpinnedWarning(v: KitVerification): string {
  if (v.signature !== 'valid')
    return 'no independent pin: the kit is unsigned, so nothing ties its files to the project root CA';
  const weak = [...new Set(v.pins.filter((p) => !p.independent).map((p) => p.source))];
  return `no independent pin: pass --root-fingerprint from the project admin (or --require-pin to refuse such kits)${
    weak.length > 0
      ? `; ${weak.join(' and ')} came with the kit and cannot vouch for it: a replaced kit brings its own`
      : ''
  }`;
}

function problemLines(v: KitVerification): string[] {
  return [
    ...v.errors.map((e) => `error: ${e}`),
    ...v.pins
      .filter((p) => p.matches === false)
      .map((p) => `root mismatch: ${p.source} pins ${p.fingerprint}, kit root is ${v.rootCaFingerprint}`),
    ...v.changed.map((c) => `changed: ${c.path} (${c.reasons.join('; ')})`),
    ...v.missing.map((m) => `missing: ${m}`),
    ...v.unexpected.map((u) => `unexpected: ${u}`),
  ];
}
