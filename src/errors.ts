/**
 * One error type for the whole project. Every failure a user can meet has a stable `code`, a
 * public message (safe to show to a remote peer), a hint that says what to do next, an HTTP
 * status for services and an exit code for the CLI. Internal detail (`detail`, `cause`) stays
 * in server logs and is never sent over the wire.
 */
import { randomBytes } from 'node:crypto';

/** Process exit codes: the one table the CLI uses (documented in docs/cli.md). */
export const ExitCode = {
  OK: 0,
  INTERNAL: 1,
  USAGE: 2,
  INVALID_INPUT: 3,
  NOT_FOUND: 4,
  UNAUTHORIZED: 5,
  CONFLICT: 6,
  UNAVAILABLE: 7,
  PENDING: 8,
  REJECTED: 9,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

interface CodeSpec {
  status: number;
  exit: ExitCode;
  hint: string;
  /** A client may try again later, with backoff: the failure is expected to pass. */
  retryable: boolean;
}

const spec = (status: number, exit: ExitCode, hint: string, o: { retryable?: true } = {}): CodeSpec => ({
  status,
  exit,
  hint,
  retryable: o.retryable ?? false,
});
/** Marks a code whose failure is expected to pass (a service down, overloaded or failing). */
const RETRY = { retryable: true } as const;

/** The catalogue of stable error codes. Adding a code is a public API change: document it. */
export const ERROR_CODES = {
  INTERNAL: spec(500, ExitCode.INTERNAL, 'This is a bug in Pollen; the server log has the detail.', RETRY),
  USAGE: spec(400, ExitCode.USAGE, 'Run the command with --help to see its options.'),
  INVALID_ARGUMENT: spec(400, ExitCode.USAGE, 'Check the value against --help.'),
  INVALID_REQUEST: spec(400, ExitCode.INVALID_INPUT, 'Check the request body against docs/api.md.'),
  PAYLOAD_TOO_LARGE: spec(413, ExitCode.INVALID_INPUT, 'Send a smaller request.'),
  FILE_NOT_FOUND: spec(404, ExitCode.NOT_FOUND, 'Check the path.'),
  FILE_EXISTS: spec(
    409,
    ExitCode.CONFLICT,
    'Choose another output folder or remove the existing files first.',
  ),
  FILE_ACCESS_DENIED: spec(
    403,
    ExitCode.UNAUTHORIZED,
    'Give the user Pollen runs as read and write access to that path (e.g. `chown -R` the folder or volume to it; the images run as uid 10001), or choose another folder.',
  ),
  // PKI
  CA_NOT_FOUND: spec(
    404,
    ExitCode.NOT_FOUND,
    'Create a CA with `pollen cert init -n NAME -o DIR` or pass -c/--ca.',
  ),
  CA_EXISTS: spec(409, ExitCode.CONFLICT, 'A CA is never overwritten; choose another folder.'),
  CA_ROOT_KEY_MISMATCH: spec(
    400,
    ExitCode.INVALID_INPUT,
    "Give this project's offline root key (rootCA.key made by `pollen cert init`) with --root-key.",
  ),
  CA_LOCKED: spec(
    401,
    ExitCode.UNAUTHORIZED,
    'Give the passphrase with --passphrase-file or POLLEN_CA_PASSPHRASE.',
  ),
  KEY_INVALID: spec(400, ExitCode.INVALID_INPUT, 'Give a PEM private key (PKCS#8, SEC1 or PKCS#1).'),
  KEY_TOO_WEAK: spec(
    400,
    ExitCode.INVALID_INPUT,
    'Use an EC P-256 or P-384 key, or RSA of at least 2048 bits.',
  ),
  CSR_INVALID: spec(400, ExitCode.INVALID_INPUT, 'Send a PEM PKCS#10 request made with the key you keep.'),
  CSR_SIGNATURE_INVALID: spec(
    400,
    ExitCode.INVALID_INPUT,
    'The CSR must be signed by its own key; make it again.',
  ),
  CSR_SUBJECT_MISMATCH: spec(
    400,
    ExitCode.INVALID_INPUT,
    'The CSR common name must equal the token subject.',
  ),
  CERT_INVALID: spec(400, ExitCode.INVALID_INPUT, 'Give a PEM X.509 certificate.'),
  CERT_REVOKED: spec(
    403,
    ExitCode.UNAUTHORIZED,
    'This certificate was revoked; enroll again with a new token.',
  ),
  CERT_SUPERSEDED: spec(
    409,
    ExitCode.CONFLICT,
    'Use the renewed certificate; a certificate renews only once.',
  ),
  CERT_EXPIRED: spec(403, ExitCode.UNAUTHORIZED, 'The certificate expired; enroll again with a new token.'),
  // Tokens and policy
  TOKEN_MISSING: spec(
    401,
    ExitCode.UNAUTHORIZED,
    'Set POLLEN_ENROLLMENT_TOKEN or put the token in startup/enrollment_token.',
  ),
  TOKEN_INVALID: spec(
    401,
    ExitCode.UNAUTHORIZED,
    'Ask the project admin for a new token (`pollen token generate`).',
  ),
  TOKEN_EXPIRED: spec(
    401,
    ExitCode.UNAUTHORIZED,
    'Ask the project admin for a new token; check that clocks are synchronised.',
  ),
  TOKEN_NOT_YET_VALID: spec(401, ExitCode.UNAUTHORIZED, 'Check that clocks are synchronised.'),
  TOKEN_SUBJECT_MISMATCH: spec(
    400,
    ExitCode.INVALID_INPUT,
    'Use the token made for this participant (`pollen token info -t TOKEN` shows its subject).',
  ),
  TOKEN_USED: spec(
    409,
    ExitCode.CONFLICT,
    'Each token enrolls once (or max_uses times); ask for a new token.',
  ),
  POLICY_INVALID: spec(
    400,
    ExitCode.INVALID_INPUT,
    'Fix the named field; `pollen policy check FILE` validates a policy.',
  ),
  POLICY_SITE_NAME: spec(
    403,
    ExitCode.REJECTED,
    'The site name does not match the policy site.name_pattern.',
  ),
  POLICY_HOST: spec(
    403,
    ExitCode.REJECTED,
    'Name only hosts the policy allows (site.host_patterns), or ask the project admin to allow them.',
  ),
  POLICY_ROLE: spec(
    400,
    ExitCode.INVALID_INPUT,
    'Use one of the roles the policy allows (user.allowed_roles).',
  ),
  POLICY_ORG: spec(
    400,
    ExitCode.INVALID_INPUT,
    'Name one of the organisations the policy lists (orgs) with --org, or ask the project admin to add it.',
  ),
  // Certificate Service
  API_KEY_REQUIRED: spec(
    401,
    ExitCode.UNAUTHORIZED,
    'Pass --api-key (or POLLEN_API_KEY), --login SUPERLINK after `pollen login`, or a service-account secret in POLLEN_TOKEN.',
  ),
  API_KEY_INVALID: spec(
    401,
    ExitCode.UNAUTHORIZED,
    'Check the API key the Certificate Service was started with.',
  ),
  FORBIDDEN: spec(403, ExitCode.UNAUTHORIZED, 'This identity may not do that.'),
  ENROLLMENT_PENDING: spec(
    202,
    ExitCode.PENDING,
    'An admin must approve it: `pollen enrollment approve NAME`.',
  ),
  ENROLLMENT_REJECTED: spec(403, ExitCode.REJECTED, 'Contact the project admin; the reason is given above.'),
  ALREADY_ENROLLED: spec(
    409,
    ExitCode.CONFLICT,
    'This site already holds a valid certificate; revoke it first to enroll again.',
  ),
  REQUEST_NOT_FOUND: spec(404, ExitCode.NOT_FOUND, 'List requests with `pollen enrollment list`.'),
  REQUEST_ALREADY_DECIDED: spec(
    409,
    ExitCode.CONFLICT,
    'Another admin decided this request first; the decision that holds is given. List requests with `pollen enrollment list --status all`.',
  ),
  PROOF_INVALID: spec(401, ExitCode.UNAUTHORIZED, 'Poll with the key the request was made with.'),
  NOT_ENROLLED: spec(404, ExitCode.NOT_FOUND, 'List enrolled sites with `pollen enrollment enrolled`.'),
  ROUTE_NOT_FOUND: spec(404, ExitCode.NOT_FOUND, 'See docs/api.md for the paths this service answers.'),
  METHOD_NOT_ALLOWED: spec(405, ExitCode.USAGE, 'See docs/api.md for the methods of each path.'),
  // The audit trail (`pollen audit verify`)
  AUDIT_CHAIN_BROKEN: spec(
    409,
    ExitCode.CONFLICT,
    'An entry of the audit log was changed, removed or moved after it was written: treat the store as tampered with, compare it with a backup and a checkpoint you saved (`pollen audit checkpoint`), and investigate who had write access.',
  ),
  AUDIT_CHECKPOINT_MISMATCH: spec(
    409,
    ExitCode.CONFLICT,
    'The chain no longer contains the head the component signed: it was recomputed after an entry was changed. Restore the log from a backup that matches the checkpoint, and investigate who had write access to the store.',
  ),
  AUDIT_CHECKPOINT_SIGNATURE: spec(
    409,
    ExitCode.CONFLICT,
    'The checkpoint was not signed by a server certificate of this project: check that you trust the right project root; if you do, the checkpoint was forged or damaged: keep it as evidence.',
  ),
  AUDIT_TRUNCATED: spec(
    409,
    ExitCode.CONFLICT,
    'Entries the component once signed are gone (the tail was cut, or the whole store rolled back to an older copy): restore the log from a backup, and investigate who had write access to the store.',
  ),
  AUDIT_NO_CHECKPOINT: spec(
    404,
    ExitCode.NOT_FOUND,
    'Checkpoints are signed every few minutes while entries are written, and when the server stops: try again later. A SuperLink without TLS signs none.',
  ),
  AUDIT_CHECKPOINT_INVALID: spec(
    400,
    ExitCode.INVALID_INPUT,
    'Give a checkpoint saved with `pollen audit checkpoint > FILE` (one JSON document).',
  ),
  RATE_LIMITED: spec(429, ExitCode.UNAVAILABLE, 'Wait and try again.', RETRY),
  UNAVAILABLE: spec(
    503,
    ExitCode.UNAVAILABLE,
    'Check that the service is running and the URL and port are right.',
    RETRY,
  ),
  TLS_FAILED: spec(502, ExitCode.UNAUTHORIZED, 'Check the root CA you trust and the server certificate.'),
  CERT_NOT_ACCEPTED: spec(
    403,
    ExitCode.UNAUTHORIZED,
    "The server refused this certificate at the TLS handshake: it is not from the server's project CA (or has the wrong type). Use the kit or certificate of this project.",
  ),
  WRONG_ENDPOINT: spec(
    400,
    ExitCode.USAGE,
    'The address answers, but not with the API this command needs: check the host and port (SuperNodes: the Fleet API, 9092; admins: the Control API, 9093).',
  ),
  ADDRESS_IN_USE: spec(
    409,
    ExitCode.CONFLICT,
    'Another process holds this port (often the same service, already running): stop it, or choose another address. `ss -ltnp` shows who listens.',
  ),
  NOT_READY: spec(
    503,
    ExitCode.UNAVAILABLE,
    'The component runs but a readiness check fails (the message names it): fix what it names (the store, the CA or TLS material, a listener), or wait longer with --timeout.',
    RETRY,
  ),
  UNEXPECTED_ANSWER: spec(
    502,
    ExitCode.UNAVAILABLE,
    'The server answered in a way this Pollen does not understand: check that the URL points to the Pollen service, of the same version.',
  ),
  CANCELLED: spec(499, ExitCode.UNAVAILABLE, 'The caller cancelled the operation; run it again to go on.'),
  PEER_NOT_SERVER: spec(
    502,
    ExitCode.UNAUTHORIZED,
    "The address answers with a certificate of the project that is not a SuperLink's (a site's or an admin's): check the SuperLink address (--superlink, the kit's endpoint) and that the SuperLink runs with its server certificate.",
  ),
  SUPERLINK_GONE: spec(
    503,
    ExitCode.UNAVAILABLE,
    'The SuperLink stopped or the connection broke. Follow the run again once it is back: pollen log RUN_ID --stream.',
    RETRY,
  ),
  // Startup kits and auto-enrollment
  CA_FINGERPRINT_MISMATCH: spec(
    403,
    ExitCode.UNAUTHORIZED,
    'The root CA does not match the pinned fingerprint: check the Certificate Service URL and ask the project admin for the right token.',
  ),
  KIT_INVALID: spec(
    400,
    ExitCode.INVALID_INPUT,
    'Point at a folder made by `pollen package` (it holds startup/fed_*.json).',
  ),
  KIT_TAMPERED: spec(
    422,
    ExitCode.INVALID_INPUT,
    'Do not use this kit: get a fresh copy from the project admin (`pollen package`).',
  ),
  KIT_UNSIGNED: spec(
    422,
    ExitCode.INVALID_INPUT,
    'Ask for a kit signed with the project CA (`pollen package -c CA_DIR`), or pass --allow-unsigned.',
  ),
  KIT_UNPINNED: spec(
    422,
    ExitCode.INVALID_INPUT,
    'Pass --root-fingerprint with the root CA fingerprint the project admin gave you out of band (or your own --token): files inside the kit cannot vouch for it.',
  ),
  // SuperNode keys (OpenSSH) and Fleet API request authentication
  SSH_KEY_INVALID: spec(
    400,
    ExitCode.INVALID_INPUT,
    'Give the private key file `ssh-keygen -t ecdsa -b 384 -N "" -f KEY` wrote (or KEY.pub for a public key), unmodified.',
  ),
  SSH_KEY_ENCRYPTED: spec(
    400,
    ExitCode.INVALID_INPUT,
    'Give an unencrypted key: remove the passphrase with `ssh-keygen -p -N "" -f KEY`, or make one with `ssh-keygen -t ecdsa -b 384 -N "" -f KEY`.',
  ),
  SSH_KEY_UNSUPPORTED: spec(
    400,
    ExitCode.INVALID_INPUT,
    'Only ecdsa-sha2-nistp256 and ecdsa-sha2-nistp384 keys are accepted: `ssh-keygen -t ecdsa -b 384 -N "" -f KEY`.',
  ),
  NODE_AUTH_MISSING: spec(
    401,
    ExitCode.UNAUTHORIZED,
    'Start the SuperNode with its key (the pollen-node-* request headers are missing).',
  ),
  NODE_AUTH_INVALID: spec(
    401,
    ExitCode.UNAUTHORIZED,
    'The request signature or MAC does not match: check the SuperNode key and that nothing rewrites requests.',
  ),
  NODE_AUTH_STALE: spec(
    401,
    ExitCode.UNAUTHORIZED,
    'The request timestamp is outside the accepted window: synchronise the clocks (NTP) of SuperNode and SuperLink.',
  ),
  NODE_AUTH_REPLAY: spec(
    401,
    ExitCode.UNAUTHORIZED,
    'This request was already received (same nonce): every request needs fresh pollen-node-* headers.',
  ),
  NODE_NOT_REGISTERED: spec(
    403,
    ExitCode.UNAUTHORIZED,
    'Ask the federation admin to register this SuperNode public key: `pollen supernode register KEY.pub FEDERATION` (`ssh-keygen -lf KEY.pub` shows its fingerprint); then start the SuperNode again.',
  ),
  NODE_IDENTITY_MISMATCH: spec(
    403,
    ExitCode.UNAUTHORIZED,
    "This node key is bound to another site's client certificate (`pollen supernode list` shows which): run the SuperNode with that site's kit, or have the admin unregister the key and register it again with --site.",
  ),
  NODE_SESSION_EXPIRED: spec(
    401,
    ExitCode.UNAUTHORIZED,
    'The session is unknown, expired or revoked: authenticate again with a signed request to open a new one.',
  ),
  // Store
  DATABASE_URL_INVALID: spec(
    400,
    ExitCode.USAGE,
    'Use a file path, sqlite:PATH or postgres://user@host:port/db.',
  ),
  DATABASE_UNAVAILABLE: spec(503, ExitCode.UNAVAILABLE, 'Check that the database is reachable.', RETRY),
  STORE_NEWER_VERSION: spec(
    409,
    ExitCode.CONFLICT,
    'Run the Pollen version that upgraded this store, or restore the backup taken before the upgrade into a new folder (pollen restore) and start this version there.',
  ),
  STORE_LEASE_HELD: spec(
    409,
    ExitCode.CONFLICT,
    'One SuperLink per database: stop the other SuperLink (the message names its host and process), or, if it died, start again once its lease has expired (30 s after its last renewal).',
    RETRY,
  ),
  STORE_LEASE_LOST: spec(
    503,
    ExitCode.UNAVAILABLE,
    "Another SuperLink took over this SuperLink's store, so this one stops: call the SuperLink that holds the lease; a restart of this one is refused (STORE_LEASE_HELD) until the lease is free.",
    RETRY,
  ),
  // App SDK (records, messages)
  RECORD_INVALID: spec(
    400,
    ExitCode.INVALID_INPUT,
    'Fix the named entry: names are 1-256 printable characters; array data must match its dtype and shape.',
  ),
  MESSAGE_INVALID: spec(
    400,
    ExitCode.INVALID_INPUT,
    'Build messages with Message.create() or message.createReply().',
  ),
  // Strategies (aggregation of a round's replies)
  UPDATE_NOT_FINITE: spec(
    422,
    ExitCode.INVALID_INPUT,
    "The named nodes sent NaN or Inf values: their replies are left out of the round. Check their training (learning rate, data) in the nodes' logs.",
  ),
  TOO_FEW_REPLIES: spec(
    422,
    ExitCode.INVALID_INPUT,
    'The strategy needs more valid replies than the round had: raise minTrainNodes, connect more SuperNodes, or lower numMaliciousNodes.',
  ),
  STRATEGY_STATE_MISSING: spec(
    400,
    ExitCode.USAGE,
    'Call configureTrain (it records the global arrays the replies start from) or loadState before aggregateTrain.',
  ),
  // Content-addressed chunks (array data, app bundles)
  CHUNK_ID_INVALID: spec(
    400,
    ExitCode.INVALID_INPUT,
    'A chunk id is the lowercase hex SHA-256 of the chunk (64 characters).',
  ),
  CHUNK_MISMATCH: spec(
    400,
    ExitCode.INVALID_INPUT,
    'The chunk data does not hash to its id: it was corrupted or tampered with in transit; send it again.',
  ),
  CHUNK_TOO_LARGE: spec(
    413,
    ExitCode.INVALID_INPUT,
    'Send chunks no larger than the receiver accepts (4 MiB by default).',
  ),
  CHUNK_MISSING: spec(
    404,
    ExitCode.NOT_FOUND,
    'Push the missing chunks first (MissingChunks tells which), then retry.',
  ),
  CHUNK_SCOPE_DENIED: spec(
    403,
    ExitCode.UNAUTHORIZED,
    "A node sends or reads a run's chunks only once the run sent it an instruction; a ServerApp only its own run's.",
  ),
  CHUNK_RUN_REQUIRED: spec(
    400,
    ExitCode.INVALID_INPUT,
    'A SuperNode uploads chunks only for a run that sent it work: name the run in the pollen-chunk-run header (Pollen SuperNodes do).',
  ),
  CHUNK_QUOTA_EXCEEDED: spec(
    429,
    ExitCode.UNAVAILABLE,
    "This node holds as many bytes of the run's chunks as the SuperLink allows (--node-chunk-quota): send the reply that names them, or retry once unused ones were collected (2 minutes after their last use).",
  ),
  STORAGE_FULL: spec(
    507,
    ExitCode.UNAVAILABLE,
    "The SuperLink's chunk storage is at its budget (--chunk-disk-budget) or its disk is full: retry later; the operator can raise the budget or free disk.",
  ),
  // Run artefacts (what a ServerApp saves: the final model, metrics, plots)
  ARTEFACT_NAME_INVALID: spec(
    400,
    ExitCode.INVALID_INPUT,
    'Name an artefact as a relative path of at most 255 characters: segments of letters, digits, `.`, `_` and `-` that do not start with `.`, joined by `/`; a name cannot also be the folder of another.',
  ),
  ARTEFACT_TOO_LARGE: spec(
    413,
    ExitCode.INVALID_INPUT,
    "Save a smaller artefact, or ask the SuperLink's operator to raise --artefact-max-size.",
  ),
  RUN_ARTEFACTS_FULL: spec(
    413,
    ExitCode.INVALID_INPUT,
    "The run's artefacts are at the SuperLink's limit (--run-artefact-budget; at most 10,000 per run): save fewer or smaller ones (saving a name again replaces it), or ask the operator to raise the budget.",
  ),
  ARTEFACT_INVALID: spec(
    422,
    ExitCode.INVALID_INPUT,
    "The bytes do not add up to the artefact's SHA-256 and size: they were damaged on the way; save it (or pull it) again.",
  ),
  ARTEFACTS_UNAVAILABLE: spec(
    400,
    ExitCode.INVALID_INPUT,
    'Only a ServerApp saves run artefacts: a ClientApp returns its results in its reply, and the ServerApp saves what the run keeps.',
  ),
  // SuperLink state (nodes, runs, messages)
  NODE_UNKNOWN: spec(
    404,
    ExitCode.NOT_FOUND,
    'List the nodes with `pollen supernode list`; the node must activate first.',
  ),
  NODE_ALREADY_REGISTERED: spec(
    409,
    ExitCode.CONFLICT,
    'This public key is already registered; the existing node id is given.',
  ),
  NODE_UNAVAILABLE: spec(
    503,
    ExitCode.UNAVAILABLE,
    'The node went offline; the run may retry or skip it.',
    RETRY,
  ),
  RUN_NOT_FOUND: spec(404, ExitCode.NOT_FOUND, 'List the runs with `pollen ls`.'),
  RUN_STATE_CONFLICT: spec(
    409,
    ExitCode.CONFLICT,
    'The run is already past that step (runs move pending → starting → running → finished): pollen list --run-id RUN_ID shows how it ended, pollen log RUN_ID its output.',
  ),
  RUN_NOT_RUNNING: spec(409, ExitCode.CONFLICT, 'Messages flow only while the run is running.'),
  MESSAGE_DUPLICATE: spec(409, ExitCode.CONFLICT, 'Every message needs a new unique id.'),
  MESSAGE_NOT_FOR_NODE: spec(
    403,
    ExitCode.UNAUTHORIZED,
    'A node may only reply to instructions it was sent (and not yet answered or timed out).',
  ),
  REPLY_DUPLICATE: spec(409, ExitCode.CONFLICT, 'Each instruction takes exactly one reply.'),
  REPLY_QUEUE_FULL: spec(
    429,
    ExitCode.UNAVAILABLE,
    'This node has as many unread replies queued as the SuperLink allows (--node-reply-queue, --node-reply-queue-mib): retry once the ServerApp has read them.',
  ),
  MESSAGE_EXPIRED: spec(
    410,
    ExitCode.CONFLICT,
    'The message outlived its time to live; give it a longer ttl.',
  ),
  MESSAGE_TOO_LARGE: spec(
    413,
    ExitCode.INVALID_INPUT,
    'Send large arrays as chunks, or raise the SuperLink message size limit.',
  ),
  // Runtime: authentication of callers and apps
  UNAUTHENTICATED: spec(
    401,
    ExitCode.UNAUTHORIZED,
    'Present a certificate from the project CA (check the federation config or the startup kit).',
  ),
  PERMISSION_DENIED: spec(403, ExitCode.UNAUTHORIZED, 'Use a certificate of the right type for this API.'),
  RIGHT_MISSING: spec(
    403,
    ExitCode.UNAUTHORIZED,
    'Ask an admin of the project for a role that grants this right (docs/identity.md lists them).',
  ),
  WRONG_ORGANISATION: spec(
    403,
    ExitCode.UNAUTHORIZED,
    'Your role grants this right only within your organisation or on what you created; ask an admin of the other organisation.',
  ),
  IDENTITY_AMBIGUOUS: spec(
    401,
    ExitCode.UNAUTHORIZED,
    'Send one credential per call: a bearer token or an admin certificate, not both and not two tokens (the Pollen CLI sends one: your login token where you are logged in, else the certificate; a client of your own must do the same).',
  ),
  AUTHORIZATION_MALFORMED: spec(
    401,
    ExitCode.UNAUTHORIZED,
    'Send the credential as `Authorization: Bearer TOKEN`.',
  ),
  OIDC_NOT_CONFIGURED: spec(
    401,
    ExitCode.UNAUTHORIZED,
    'This service accepts no login tokens: use an admin certificate or API key, or ask its operator to configure an identity provider (--identity-config, docs/identity.md).',
  ),
  SERVICE_ACCOUNTS_UNAVAILABLE: spec(
    401,
    ExitCode.UNAUTHORIZED,
    'This service takes no service-account secrets; use a login token, an admin certificate or the API key.',
  ),
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

export type ErrorCode = keyof typeof ERROR_CODES;

export interface PollenErrorOptions {
  hint?: string;
  /** Server-side detail; never leaves the process. */
  detail?: string;
  cause?: unknown;
  /** Extra public fields (e.g. a request id for a pending enrollment). */
  data?: Record<string, unknown>;
}

/**
 * Pollen's one error type: a stable `code` (listed in docs/errors.md), a public message and a
 * hint. Apps get it from the SDK and strategies (e.g. `UNAVAILABLE` when too few nodes are up).
 *
 * @example
 * ```ts
 * try {
 *   await strategy.start({ grid, initialArrays, numRounds: 3 });
 * } catch (e) {
 *   if (isPollenError(e) && e.code === 'UNAVAILABLE') console.error(e.message, e.hint);
 *   throw e;
 * }
 * ```
 */
export class PollenError extends Error {
  readonly code: ErrorCode;
  readonly hint: string;
  readonly detail: string | undefined;
  readonly data: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: PollenErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PollenError';
    this.code = code;
    this.hint = options.hint ?? ERROR_CODES[code].hint;
    this.detail = options.detail;
    this.data = options.data;
  }

  get status(): number {
    return ERROR_CODES[this.code].status;
  }

  get exitCode(): ExitCode {
    return ERROR_CODES[this.code].exit;
  }

  /** Whether a client may try again later, with backoff (the `retry` column of docs/errors.md). */
  get retryable(): boolean {
    return ERROR_CODES[this.code].retryable;
  }

  /** The public form sent over the wire and printed by `--json`; `data` cannot replace the code, message or hint. */
  toJSON(): { code: ErrorCode; message: string; hint: string } & Record<string, unknown> {
    return { ...this.data, code: this.code, message: this.message, hint: this.hint };
  }
}

/**
 * Whether a thrown value is a PollenError (then it has a `code` and a `hint`).
 *
 * @example
 * ```ts
 * if (isPollenError(e)) console.error(`${e.code}: ${e.message}`);
 * ```
 */
export function isPollenError(e: unknown): e is PollenError {
  return e instanceof PollenError;
}

/** Narrow an unknown throwable to a PollenError, keeping unexpected ones as INTERNAL. */
export function toPollenError(e: unknown): PollenError {
  if (e instanceof PollenError) return e;
  const err = e as NodeJS.ErrnoException;
  if (err?.code === 'ENOENT')
    return new PollenError('FILE_NOT_FOUND', `No such file: ${err.path ?? ''}`.trim());
  if (err?.code === 'EEXIST')
    return new PollenError('FILE_EXISTS', `Already exists: ${err.path ?? ''}`.trim());
  if (err?.code === 'EACCES' || err?.code === 'EPERM' || err?.code === 'EROFS') return accessDenied(err);
  if (err?.code === 'ENOSPC' || err?.code === 'EDQUOT')
    return new PollenError('STORAGE_FULL', 'The disk is full', { cause: e, detail: err.path });
  if (err?.code === 'ECONNREFUSED' || err?.code === 'ENOTFOUND' || err?.code === 'ECONNRESET')
    return new PollenError('UNAVAILABLE', `Cannot reach the service (${err.code})`, { cause: e });
  return new PollenError('INTERNAL', 'Internal error', {
    detail: e instanceof Error ? (e.stack ?? e.message) : String(e),
    cause: e,
  });
}

/** A path this process may not write (or read): names the path and who the process runs as. */
export function accessDenied(err: { code?: string; path?: string }, path = err.path ?? ''): PollenError {
  const what = err.code === 'EROFS' ? 'Read-only file system' : 'Permission denied';
  const user = process.getuid ? ` (Pollen runs as uid ${process.getuid()})` : '';
  return new PollenError('FILE_ACCESS_DENIED', `${what}: ${path}${user}`, { cause: err });
}

/** Logs an unexpected failure under the reference its client was given. */
export type FailureReporter = (reference: string, error: unknown) => void;

/** Error codes of a connection a server opened itself (to its database) that failed. */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'ECONNRESET']);

/**
 * What a server may tell a client about any throwable. A PollenError is public by design (its
 * code, message, hint and data; `detail` and `cause` stay in the process); anything else — a bug,
 * an OS error naming a file, an INTERNAL — becomes a bare INTERNAL whose message carries only a
 * short reference, and `report` logs the full error under it. A connection the server could not
 * make (its database, most often) is answered the same way as UNAVAILABLE, which a client retries.
 */
export function publicError(e: unknown, report: FailureReporter): PollenError {
  if (e instanceof PollenError && e.code !== 'INTERNAL') return e;
  const reference = randomBytes(5).toString('hex');
  report(reference, e);
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && UNREACHABLE.has(code))
    return new PollenError(
      'UNAVAILABLE',
      `The service cannot reach a system it depends on, such as its database (reference ${reference})`,
      {
        data: { reference },
      },
    );
  return new PollenError('INTERNAL', `Internal error (reference ${reference})`, { data: { reference } });
}
