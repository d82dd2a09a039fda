/**
 * Error codes of the people side: access tokens and the access policy, logging in, service
 * accounts, federations, apps and runs, app bundles.
 * Part of the catalogue that src/errors.ts puts together (ERROR_CODES).
 */
import { type CodeSpec, ExitCode, RETRY, spec } from './spec.js';

export const PEOPLE_CODES = {
  // Runtime: people's access tokens (OIDC) and the access policy
  ACCESS_TOKEN_MALFORMED: spec(
    401,
    ExitCode.UNAUTHORIZED,
    'Send the access token `pollen login` stored (a signed JWT from the identity provider) as `Authorization: Bearer TOKEN`; log in again if it was damaged.',
  ),
  ACCESS_TOKEN_EXPIRED: spec(
    401,
    ExitCode.UNAUTHORIZED,
    "Run `pollen login` again (the CLI refreshes tokens itself while its refresh token lasts); a pipeline uses a service account instead of a person's token.",
  ),
  ACCESS_TOKEN_NOT_YET_VALID: spec(
    401,
    ExitCode.UNAUTHORIZED,
    "The token's validity starts later than this service's clock allows: check the clocks (NTP) of the identity provider and the service.",
  ),
  ACCESS_TOKEN_WRONG_ISSUER: spec(
    401,
    ExitCode.UNAUTHORIZED,
    'Log in to the identity provider this service accepts (`pollen login` asks the service which one), not another.',
  ),
  ACCESS_TOKEN_WRONG_AUDIENCE: spec(
    401,
    ExitCode.UNAUTHORIZED,
    "Get a token for this service: `pollen login` asks for the service's audience; in the identity provider, give the login client an audience mapper for it (docs/identity.md).",
  ),
  ACCESS_TOKEN_UNKNOWN_KEY: spec(
    401,
    ExitCode.UNAUTHORIZED,
    'The identity provider does not publish the key that signed this token: log in again (if the provider rotated its keys a moment ago, retry in a minute).',
  ),
  ACCESS_TOKEN_BAD_SIGNATURE: spec(
    401,
    ExitCode.UNAUTHORIZED,
    'The token was not signed by the identity provider this service trusts: log in again with `pollen login`.',
  ),
  ACCESS_TOKEN_ALG_NOT_ALLOWED: spec(
    401,
    ExitCode.UNAUTHORIZED,
    "Only tokens signed with an asymmetric algorithm the service allows are accepted: set the identity provider's access-token signature algorithm to one of them (RS256, ES256, …).",
  ),
  ACCESS_TOKEN_CLAIMS_INVALID: spec(
    403,
    ExitCode.UNAUTHORIZED,
    "Ask the identity provider's administrator to fix your account's claims as docs/identity.md describes (for example, exactly one organisation).",
  ),
  ISSUER_UNREACHABLE: spec(
    503,
    ExitCode.UNAVAILABLE,
    "The service cannot fetch its identity provider's keys just now: retry shortly; the operator checks the issuer URL and the network.",
    RETRY,
  ),
  ISSUER_MISCONFIGURED: spec(
    503,
    ExitCode.UNAVAILABLE,
    "The identity provider's discovery document or key set does not fit the configured issuer: the operator sets [identity.oidc] issuer to the exact `issuer` the provider publishes.",
  ),
  ACCESS_POLICY_INVALID: spec(
    400,
    ExitCode.INVALID_INPUT,
    'Fix the named lines of the access policy file (docs/identity.md shows the default policy and every role, right and scope).',
  ),
  APP_TOKEN_INVALID: spec(
    401,
    ExitCode.UNAUTHORIZED,
    'App processes are started by the SuperLink or SuperNode, which give them their token.',
  ),
  // People: logging in (`pollen login`, `logout`, `whoami`)
  LOGIN_NOT_OFFERED: spec(
    404,
    ExitCode.NOT_FOUND,
    'This SuperLink announces no OpenID Provider: use an admin kit, or name the provider yourself with `pollen config superlink add NAME --address HOST:9093 --issuer URL --client-id ID`.',
  ),
  LOGIN_DENIED: spec(
    403,
    ExitCode.UNAUTHORIZED,
    "The sign-in was refused at the identity provider (you pressed Abort, or it does not let you use this client): run `pollen login` again, or ask the provider's administrator.",
  ),
  LOGIN_EXPIRED: spec(
    401,
    ExitCode.UNAUTHORIZED,
    'The code expired before you signed in: run `pollen login` again and complete the sign-in in the browser within the time shown.',
  ),
  LOGIN_REQUIRED: spec(
    401,
    ExitCode.UNAUTHORIZED,
    'Your login ended (it expired or was revoked at the identity provider): run `pollen login SUPERLINK` again.',
  ),
  LOGIN_FAILED: spec(
    502,
    ExitCode.UNAUTHORIZED,
    "The identity provider refused the request: check the SuperLink's issuer and client id (`pollen config superlink list`), or ask its administrator.",
  ),
  LOGIN_ISSUER_UNREACHABLE: spec(
    503,
    ExitCode.UNAVAILABLE,
    'The OpenID Provider does not answer: check its URL (the issuer) and your network, then try again.',
    RETRY,
  ),
  ROOT_FINGERPRINT_MISMATCH: spec(
    403,
    ExitCode.UNAUTHORIZED,
    'No certificate the server sent has the fingerprint you gave: check the address and ask the project admin for the root fingerprint (`pollen cert init` printed it; `openssl x509 -noout -fingerprint -sha256 -in rootCA.pem` shows it). Nothing was saved.',
  ),
  // Service accounts (pipelines and schedulers calling the Control API)
  SERVICE_ACCOUNT_INVALID: spec(
    401,
    ExitCode.UNAUTHORIZED,
    "No service account has this secret: check POLLEN_TOKEN or --token-file (a secret starts with pollen_sa_ and is shown once, by `pollen service-account create`; a lost one cannot be shown again: create a new account). The SuperLink and the Certificate Service each know only their own accounts' secrets: unset POLLEN_TOKEN to use your login or API key instead.",
  ),
  SERVICE_ACCOUNT_REVOKED: spec(
    401,
    ExitCode.UNAUTHORIZED,
    'This service account was revoked: create a new one (`pollen service-account create`) and give the pipeline its secret.',
  ),
  SERVICE_ACCOUNT_EXPIRED: spec(
    401,
    ExitCode.UNAUTHORIZED,
    'This service account expired: create a new one with a later --expires and give the pipeline its secret.',
  ),
  SERVICE_ACCOUNT_EXISTS: spec(
    409,
    ExitCode.CONFLICT,
    'Choose another name: a name is never reused, also after a revocation, so what an account did stays attributed to it.',
  ),
  SERVICE_ACCOUNT_NOT_FOUND: spec(
    404,
    ExitCode.NOT_FOUND,
    '`pollen service-account list` shows the accounts you may manage.',
  ),
  SERVICE_ACCOUNT_ROLE_TOO_WIDE: spec(
    403,
    ExitCode.UNAUTHORIZED,
    'A service account gets no role wider than those of whoever creates it: give it your role or a narrower one, or ask a project admin.',
  ),
  // Federations
  FEDERATION_EXISTS: spec(409, ExitCode.CONFLICT, 'Choose another name, or `pollen federation show NAME`.'),
  FEDERATION_NAME_RESERVED: spec(
    400,
    ExitCode.INVALID_INPUT,
    'Every SuperLink has the federation `default` already (served by every node); create yours under another name.',
  ),
  FEDERATION_DEFAULT_IMPLICIT: spec(
    400,
    ExitCode.INVALID_INPUT,
    'The federation `default` has no members or node list: every node serves it and your own roles apply. Create a federation to invite people into.',
  ),
  FEDERATION_ROLE_TOO_WIDE: spec(
    403,
    ExitCode.UNAUTHORIZED,
    'In a federation you give nobody a role wider than your own there, and remove nobody whose role is wider: ask a project admin of the federation.',
  ),
  MEMBER_NOT_FOUND: spec(404, ExitCode.NOT_FOUND, '`pollen federation members NAME` lists the members.'),
  NODE_NOT_IN_FEDERATION: spec(
    403,
    ExitCode.UNAUTHORIZED,
    "A run reaches only the nodes serving its federation: ask the federation's admins to add the node (`pollen supernode register KEY.pub FEDERATION`).",
  ),
  INVITATION_NOT_FOUND: spec(
    404,
    ExitCode.NOT_FOUND,
    'Check the code (it starts with pollen_inv_ and is shown once, when the invitation is made), or ask for a new invitation.',
  ),
  INVITATION_EXPIRED: spec(410, ExitCode.CONFLICT, 'Ask whoever invited you for a new invitation.'),
  INVITATION_USED: spec(
    409,
    ExitCode.CONFLICT,
    'An invitation is accepted once: `pollen federation list` shows whether you are a member; otherwise ask for a new one.',
  ),
  INVITATION_REVOKED: spec(410, ExitCode.CONFLICT, 'The invitation was withdrawn: ask whoever invited you.'),
  INVITATION_WRONG_IDENTITY: spec(
    403,
    ExitCode.UNAUTHORIZED,
    '`pollen whoami` shows who you are logged in as: log in as the invited identity (with the invited, verified e-mail), or ask for an invitation to this one.',
  ),
  // Runtime: apps and runs
  APP_LOAD_FAILED: spec(
    400,
    ExitCode.INVALID_INPUT,
    'The app module threw while it was loaded: fix the error the message names, then start the run again.',
  ),
  APP_EXPORT_MISSING: spec(
    400,
    ExitCode.INVALID_INPUT,
    'Export the app from the file package.json names (pollen.clientapp / pollen.serverapp): `export default new ClientApp({ train })` or `export const app = …`, then start the run again.',
  ),
  BUNDLE_NOT_FOUND: spec(
    404,
    ExitCode.NOT_FOUND,
    'Start the run again: `pollen run` pushes the bundle first.',
  ),
  RUN_STOPPED: spec(409, ExitCode.CONFLICT, 'The run was stopped by an admin.'),
  RUN_CONFIG_UNKNOWN: spec(
    400,
    ExitCode.USAGE,
    'Use a key the app declares (package.json → pollen.config), or declare the new key there with its default.',
  ),
  // App bundles (`pollen build`)
  APP_INVALID: spec(
    400,
    ExitCode.INVALID_INPUT,
    'Fix the app\'s package.json: name, version and a "pollen" field with serverapp, clientapp, config and assets.',
  ),
  APP_BUILD_FAILED: spec(
    400,
    ExitCode.INVALID_INPUT,
    'Fix the errors esbuild reports above (an import that does not resolve, a syntax error), then build again.',
  ),
  BUNDLE_INVALID: spec(
    422,
    ExitCode.INVALID_INPUT,
    'The .pollen file is damaged or was not made by `pollen build`: build the app again.',
  ),
  RUN_FAILED: spec(500, ExitCode.INTERNAL, 'Read the run log: pollen log RUN_ID.'),
  CONFIG_INVALID: spec(400, ExitCode.INVALID_INPUT, 'Fix the named entry of ~/.pollen/config.toml.'),
  SUPERLINK_NOT_FOUND: spec(
    404,
    ExitCode.NOT_FOUND,
    'Add a connection to the SuperLink: pollen config superlink add NAME --address HOST:9093 --kit ADMIN_KIT.',
  ),
  FEDERATION_NOT_FOUND: spec(
    404,
    ExitCode.NOT_FOUND,
    'No such federation on this SuperLink, or you are not a member: `pollen federation list` shows yours; a lead of the federation invites you (`pollen federation accept CODE`).',
  ),
  APP_REQUIREMENTS_MISSING: spec(
    412,
    ExitCode.INVALID_INPUT,
    "Install what the message names into the site's Python environment (docs/python-operators.md: a virtual environment, from a wheelhouse offline), check it with `pollen env check APP_DIR --python PATH`, then start the run again.",
  ),
  PYTHON_NOT_FOUND: spec(
    503,
    ExitCode.NOT_FOUND,
    "Give a Python interpreter that runs: --python PATH (a virtual environment's bin/python) or POLLEN_PYTHON.",
  ),
  RESOURCES_INVALID: spec(
    400,
    ExitCode.USAGE,
    'Write the resources as cpu=N,gpu=M (M GPUs, ids 0 … M-1) or gpu=0,2 (those ids), e.g. --resources cpu=8,gpu=2.',
  ),
  GPU_UNAVAILABLE: spec(
    503,
    ExitCode.UNAVAILABLE,
    'Every GPU of this node is given to another run: start the run when one ends, ask for fewer (run config gpus-per-run), or let runs share GPUs (--share-gpus).',
    RETRY,
  ),
  APP_NOT_TRUSTED: spec(
    403,
    ExitCode.UNAUTHORIZED,
    'The site runs only the app hashes it trusts (--trusted-app); `pollen build` prints the hash to send its operator.',
  ),
  BACKUP_PASSPHRASE_REQUIRED: spec(
    400,
    ExitCode.USAGE,
    'Give the passphrase in a file (--passphrase-file FILE, mode 0600) or in POLLEN_BACKUP_PASSPHRASE: every archive is encrypted and authenticated with it.',
  ),
  BACKUP_UNKNOWN_COMPONENT: spec(
    400,
    ExitCode.INVALID_INPUT,
    'Point at a SuperLink state dir (superlink.db), a Certificate Service workspace (cert-service.db) or a startup kit, or say which with --component.',
  ),
  BACKUP_INVALID: spec(
    400,
    ExitCode.INVALID_INPUT,
    'The file is not a Pollen backup archive (or is cut short): restore the file `pollen backup` wrote, copied whole.',
  ),
  BACKUP_WRONG_PASSPHRASE: spec(
    401,
    ExitCode.UNAUTHORIZED,
    'Give the passphrase the archive was written with (--passphrase-file or POLLEN_BACKUP_PASSPHRASE).',
  ),
  BACKUP_TAMPERED: spec(
    400,
    ExitCode.INVALID_INPUT,
    'The archive was changed after it was written: nothing was restored. Restore an intact copy (keep backups on write-once or separately secured storage).',
  ),
  BACKUP_COMPONENT_MISMATCH: spec(
    409,
    ExitCode.CONFLICT,
    'The archive holds another component than --component names: pick the right archive, or drop --component to restore what it holds.',
  ),
  RESTORE_TARGET_NOT_EMPTY: spec(
    409,
    ExitCode.CONFLICT,
    'Restore into a new or empty folder (-w DIR), then point the component at it; restore never overwrites files.',
  ),
  BACKUP_DATABASE_FAILED: spec(
    503,
    ExitCode.UNAVAILABLE,
    'Check that pg_dump / pg_restore are installed and that the database URL (--database) is reachable and its user may read (dump) or create (restore) the tables.',
  ),
  DOCTOR_FOUND_FAILURES: spec(
    503,
    ExitCode.UNAVAILABLE,
    'Fix each failed check as its line says, then run pollen doctor again.',
  ),
} as const satisfies Record<string, CodeSpec>;
