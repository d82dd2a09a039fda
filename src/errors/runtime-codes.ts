/**
 * Error codes of the runtime's machinery: the store, the app SDK, strategies, chunks, run
 * artefacts, SuperLink state, and the authentication of callers and apps.
 * Part of the catalogue that src/errors.ts puts together (ERROR_CODES).
 */
import { type CodeSpec, ExitCode, RETRY, spec } from './spec.js';

export const RUNTIME_CODES = {
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
} as const satisfies Record<string, CodeSpec>;
