/**
 * Error codes of the trust layer: PKI, tokens and policy, the Certificate Service, the audit trail,
 * startup kits, SuperNode keys and request authentication.
 * Part of the catalogue that src/errors.ts puts together (ERROR_CODES).
 */
import { type CodeSpec, ExitCode, RETRY, spec } from './spec.js';

export const TRUST_CODES = {
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
} as const satisfies Record<string, CodeSpec>;
