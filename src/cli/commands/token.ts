import { type Command, Option } from 'commander';
import { action, lazy, valuesFrom } from '../command.js';
import {
  apiKeyOption,
  caCertOption,
  caOption,
  caPassphraseOption,
  certServiceOption,
  loginOption,
  policyOption,
} from '../env-options.js';
import type { TokenBatchOptions } from '../token/batch.js';
import type { TokenGenerateOptions } from '../token/generate.js';
import type { TokenInfoOptions } from '../token/info.js';

const tokenBatch = lazy(() => import('../token/batch.js'), 'tokenBatch');
const tokenGenerate = lazy(() => import('../token/generate.js'), 'tokenGenerate');
const tokenInfo = lazy(() => import('../token/info.js'), 'tokenInfo');

const collect = (v: string, prev: string[] = []) => [...prev, v];

const ENV_HELP = `
Environment variables (flags win):
  POLLEN_CA_PATH            CA folder made by \`pollen cert init\` (local mode, -c)
  POLLEN_ENROLLMENT_POLICY  enrollment policy YAML (local mode, -p); built-in default if unset
  POLLEN_CERT_SERVICE_URL   Certificate Service URL (remote mode, --cert-service)
  POLLEN_API_KEY            Certificate Service API key (remote mode, --api-key)
  POLLEN_LOGIN              present your login to this SuperLink instead (remote mode, --login)
  POLLEN_CA_CERT            root CA to trust for the Certificate Service (--ca-cert)

Modes: local signs with the CA folder's token key (never the CA key); remote asks the Certificate
Service (POST /v1/tokens), which applies its own policy. Remote is used when --cert-service is given,
or when POLLEN_CERT_SERVICE_URL is set and -c is not.`;

/** The options that choose between local and remote issuing, given on the command line. */
const given = (cmd: Command) => valuesFrom(cmd, 'cli', 'ca', 'certService', 'policy');

function addIssueOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option('--user', 'user tokens (subject = e-mail; role from -r)').conflicts(['relay', 'server']),
    )
    .addOption(new Option('--relay', 'relay tokens (hierarchical FL)').conflicts(['user', 'server']))
    .addOption(new Option('--server', 'server (SuperLink) tokens').conflicts(['user', 'relay']))
    .addOption(
      new Option(
        '-r, --role <ROLE>',
        "role for --user tokens (default: the policy's user.default_role)",
      ).choices(['lead', 'member', 'org_admin']),
    )
    .option(
      '--host <HOST>',
      'server/relay tokens: a DNS name or IP address the certificate names (repeatable; policy site.host_patterns)',
      collect,
    )
    .option(
      '--org <ORG>',
      'the organisation the certificates name (O=); roles scoped to an organisation apply within it (policy orgs)',
    )
    .addOption(caOption('local mode: the CA folder'))
    .addOption(
      policyOption('-p, --policy <POLICY>', 'local mode: enrollment policy YAML (default: built-in)'),
    )
    .addOption(certServiceOption('remote mode: Certificate Service URL'))
    .addOption(apiKeyOption('remote mode: API key (prefer the environment variable)'))
    .addOption(loginOption())
    .addOption(caCertOption('remote mode: root CA to trust (default: CA_PATH/rootCA.pem)'))
    .addOption(caPassphraseOption())
    .option('-f, --force', 'overwrite existing output files');
}

export function registerToken(program: Command): void {
  const token = program
    .command('token')
    .description('generate and inspect enrollment tokens (JWT, ES256, signed by the CA folder token key)')
    .addHelpText(
      'after',
      `
A site (or user) enrolls with a token: it proves who the project admin allowed to join, as which
type (client, server, relay, user) and role. Tokens are single-use by default (policy token.max_uses),
expire (policy token.validity, default 7d) and pin the project root CA.

Examples:
  pollen token generate -s hospital-1 -c ./ca
  pollen token batch -n 10 --prefix hospital -c ./ca -o tokens.csv
  pollen token info -t enrollment_token.txt -c ./ca
${ENV_HELP}`,
    );

  addIssueOptions(
    token
      .command('generate')
      .description('generate one enrollment token')
      .option('-s, --subject <SUBJECT>', 'site name, or e-mail for --user (required)')
      .option('-n, --name <NAME>', 'the same as -s (FLARE spells it -n)')
      .option('-o, --output <FILE>', 'write the token to FILE (mode 0600) instead of stdout'),
  )
    .addHelpText(
      'after',
      `
Examples:
  pollen token generate -s hospital-1 -c ./ca                 client token, printed on stdout
  pollen token generate -n hospital-1 -c ./ca                 the same (FLARE's -n)
  pollen token generate -s hospital-1 -c ./ca -o hospital-1.token
  pollen token generate -s admin@example.com --user -c ./ca   user token, role lead (policy default)
  pollen token generate -s researcher@example.com --user -r member -c ./ca
  pollen token generate -s hospital-1 --org "Hospital One" -c ./ca   the certificate names O=Hospital One
  pollen token generate -s relay-1 --relay -c ./ca
  pollen token generate -s superlink --server --host superlink.example.com --host 10.0.0.5 -c ./ca
  pollen token generate -s hospital-1 -c ./ca -p enrollment_policy.yaml
  POLLEN_API_KEY=… pollen token generate -s hospital-1 --cert-service https://certs:8443 --ca-cert rootCA.pem

The text output is the token alone (details go to stderr), so TOKEN=$(pollen token generate …) works.
--json prints {token, tokenId, subject, subjectType, expiresAt, mode, output}.
${ENV_HELP}`,
    )
    .action(
      action<Omit<TokenGenerateOptions, 'given'>>((f, out, _a, cmd) =>
        tokenGenerate({ ...f, given: given(cmd) }, out),
      ),
    );

  addIssueOptions(
    token
      .command('batch')
      .description('generate many enrollment tokens into a CSV, a TXT file or a folder')
      .option('-n, --count <COUNT>', 'number of tokens, named PREFIX-1 … PREFIX-COUNT')
      .option('--prefix <PREFIX>', 'name prefix for -n (default: client)')
      .option('--names <NAMES...>', 'explicit subject names (instead of -n)')
      .requiredOption('-o, --output <OUT>', 'FILE.csv, FILE.txt, or a folder (existing, or ending in /)'),
  )
    .addHelpText(
      'after',
      `
Output (always mode 0600; existing files are refused unless --force):
  FILE.csv   header subject,token_id,subject_type,expires_at,token
  FILE.txt   one "SUBJECT TOKEN" line per token
  DIR/       one DIR/NAME.token file per subject, holding the token alone, e.g. for
             kubectl create secret generic hospital-1-token --from-file=token=DIR/hospital-1.token

Examples:
  pollen token batch -n 10 --prefix hospital -c ./ca -o tokens.csv     hospital-1 … hospital-10
  pollen token batch --names site-a site-b site-c -c ./ca -o tokens/
  pollen token batch --names alice@org.com bob@org.com --user -r member -c ./ca -o users.txt
  pollen token batch -n 3 --prefix relay --relay -c ./ca -o relay_tokens.csv
  pollen token batch -n 100 --prefix site --cert-service https://certs:8443 -o tokens.csv
${ENV_HELP}`,
    )
    .action(
      action<Omit<TokenBatchOptions, 'given'>>((f, out, _a, cmd) =>
        tokenBatch({ ...f, given: given(cmd) }, out),
      ),
    );

  token
    .command('info')
    .description('show what a token says (and check its signature when a CA folder is at hand)')
    .addOption(
      new Option('-t, --token <TOKEN|FILE>', 'the token, a file holding it, or - for stdin').env(
        'POLLEN_ENROLLMENT_TOKEN',
      ),
    )
    .addOption(
      new Option('-c, --ca <CA_PATH>', 'CA folder whose token key must have signed it').env('POLLEN_CA_PATH'),
    )
    .addHelpText(
      'after',
      `
Without a CA folder the token is only decoded ("signature: not checked (no CA at hand)"); with -c
(or POLLEN_CA_PATH) the signature, issuer and pinned root CA fingerprint are checked too. An expired
token is still shown (expired: true). Exit code 0 whenever the token could be read.

Examples:
  pollen token info -t enrollment_token.txt
  pollen token info -t "eyJhbGciOiJFUzI1NiIs…" -c ./ca --json
  pollen token generate -s hospital-1 -c ./ca | pollen token info -t -
`,
    )
    .action(action<TokenInfoOptions>(tokenInfo));
}
