import {
  createHash,
  createHmac,
  type KeyObject,
  randomBytes,
  sign,
  timingSafeEqual,
  verify,
} from 'node:crypto';
import { PollenError } from '../errors.js';
import {
  ecdsaHashFor,
  nodeIdFromPublicKey,
  parseSshPublicKeyBlob,
  type SshPrivateKey,
  type SshPublicKey,
  sshPublicKeyBlob,
} from '../pki/openssh.js';

/**
 * Fleet API request authentication for SuperNodes, bound to each request.
 *
 * Flower signs only a timestamp, so headers captured from one request can be replayed on
 * another. Pollen signs (or MACs) the canonical string
 *
 *   pollen-node-auth-v1\n{method}\n{sha256hex(body)}\n{timestampMs}\n{nonce}
 *
 * where method is the full RPC path (`/pollen.v1.Fleet/ActivateNode`), body the serialized
 * request bytes and nonce 16 random bytes in base64url. The SuperLink refuses timestamps
 * outside ±windowMs and nonces it has seen within the window.
 *
 * 1. Opening a session: the node signs with its ECDSA key (SHA-256 on P-256, SHA-384 on P-384;
 *    IEEE-P1363 r||s encoding, fixed length and what WebCrypto produces). The SuperLink checks
 *    it once and returns a session {sessionId, secret, nodeId, expiresAt} inside the TLS
 *    response.
 * 2. Every later request carries HMAC-SHA256(secret, canonical string) instead: the same
 *    binding for ~1 µs, so ECDSA verification (~1,000/s/core on P-384) never caps throughput.
 *
 * Headers are plain lowercase string maps, so any RPC framework can carry them (a Connect
 * interceptor passes body = the serialized request bytes).
 */

export const AUTH_VERSION = 'pollen-node-auth-v1';

export const NODE_AUTH_HEADERS = {
  /** Base64 (standard, as in KEY.pub) of the OpenSSH public key wire blob. */
  key: 'pollen-node-key',
  timestamp: 'pollen-node-timestamp',
  nonce: 'pollen-node-nonce',
  /** Base64url of the IEEE-P1363 (r||s) ECDSA signature. */
  signature: 'pollen-node-signature',
  session: 'pollen-node-session',
  /** Base64url of HMAC-SHA256(session secret, canonical string). */
  mac: 'pollen-node-mac',
} as const;

export type Headers = Readonly<Record<string, string | undefined>>;
export type Body = Uint8Array | string;

/** A session as the SuperLink returns it to the node (inside the TLS-protected response). */
export interface NodeSession {
  /** 128 random bits, base64url. Not a secret on its own. */
  sessionId: string;
  /** 32 random bytes: the HMAC key. */
  secret: Buffer;
  nodeId: string;
  /** Milliseconds since the epoch. */
  expiresAt: number;
}

const NONCE_BYTES = 16;
const NONCE_RE = /^[A-Za-z0-9_-]{22}$/; // 16 bytes, base64url unpadded
const TIMESTAMP_RE = /^\d{1,15}$/;
const SESSION_RE = /^[A-Za-z0-9_-]{22}$/;
const MAC_RE = /^[A-Za-z0-9_-]{43}$/; // 32 bytes
const SIGNATURE_RE = /^[A-Za-z0-9_-]{80,140}$/; // 64 (P-256) or 96 (P-384) bytes
const KEY_CACHE_SIZE = 4096;
const KEY_RE = /^[A-Za-z0-9+/]{1,400}={0,2}$/;

/** The string a node signs or MACs. The method may not contain a newline (it would be ambiguous). */
export function canonicalString(method: string, body: Body, timestampMs: string, nonce: string): string {
  const bodyHash = createHash('sha256').update(body).digest('hex');
  return `${AUTH_VERSION}\n${method}\n${bodyHash}\n${timestampMs}\n${nonce}`;
}

function checkMethod(method: string): void {
  if (method.length === 0 || method.length > 512 || /[\r\n]/.test(method))
    throw new PollenError('NODE_AUTH_INVALID', 'The RPC method name is not acceptable');
}

function newNonce(): string {
  return randomBytes(NONCE_BYTES).toString('base64url');
}

/** Signs Fleet API requests with the SuperNode key; holds no session state itself. */
export class RequestSigner {
  readonly privateKey: KeyObject;
  /** Base64 of the public key wire blob: the `pollen-node-key` header value. */
  readonly publicKeyHeader: string;
  readonly nodeId: string;
  private readonly hash: 'sha256' | 'sha384';
  private readonly now: () => number;

  constructor(privateKey: KeyObject | SshPrivateKey, options: { now?: () => number } = {}) {
    this.privateKey = 'privateKey' in privateKey ? privateKey.privateKey : privateKey;
    if (this.privateKey.type !== 'private')
      throw new PollenError('SSH_KEY_INVALID', 'RequestSigner needs a private key');
    const blob = sshPublicKeyBlob(this.privateKey); // refuses anything but EC P-256/P-384
    this.publicKeyHeader = blob.toString('base64');
    this.nodeId = nodeIdFromPublicKey(this.privateKey);
    this.hash = ecdsaHashFor(this.privateKey);
    this.now = options.now ?? Date.now;
  }

  /** Headers for a request signed with the node key (opens a session). */
  signedHeaders(method: string, body: Body): Record<string, string> {
    checkMethod(method);
    const timestamp = String(this.now());
    const nonce = newNonce();
    const signature = sign(this.hash, Buffer.from(canonicalString(method, body, timestamp, nonce)), {
      key: this.privateKey,
      dsaEncoding: 'ieee-p1363',
    });
    return {
      [NODE_AUTH_HEADERS.key]: this.publicKeyHeader,
      [NODE_AUTH_HEADERS.timestamp]: timestamp,
      [NODE_AUTH_HEADERS.nonce]: nonce,
      [NODE_AUTH_HEADERS.signature]: signature.toString('base64url'),
    };
  }

  /** Headers for a request within a session: an HMAC with the session secret. */
  sessionHeaders(
    session: { sessionId: string; secret: Uint8Array },
    method: string,
    body: Body,
  ): Record<string, string> {
    checkMethod(method);
    const timestamp = String(this.now());
    const nonce = newNonce();
    const mac = createHmac('sha256', session.secret)
      .update(canonicalString(method, body, timestamp, nonce))
      .digest('base64url');
    return {
      [NODE_AUTH_HEADERS.session]: session.sessionId,
      [NODE_AUTH_HEADERS.timestamp]: timestamp,
      [NODE_AUTH_HEADERS.nonce]: nonce,
      [NODE_AUTH_HEADERS.mac]: mac,
    };
  }
}

export interface RequestVerifierOptions {
  /** Accepted clock difference either way, and how long nonces are remembered. Default 60 s. */
  windowMs?: number;
  /**
   * Most nonces remembered at once (~100 bytes each). When full, new requests are refused with
   * RATE_LIMITED rather than letting memory grow. Default 1,000,000: ~16,000 requests/s
   * sustained with the default window (a nonce is kept ~windowMs after its timestamp).
   */
  maxNonces?: number;
  /**
   * Most nonces one node may have remembered at once (default maxNonces / 20): a node that
   * floods is refused with RATE_LIMITED on its own, and the others keep room.
   */
  maxNoncesPerNode?: number;
  /** Session lifetime. Default 1 hour. */
  sessionTtlMs?: number;
  /** Sessions kept per node; opening one more drops the oldest. Default 4. */
  maxSessionsPerNode?: number;
  now?: () => number;
}

export interface SignedRequest {
  method: string;
  body: Body;
  headers: Headers;
  /** The node id registered for this key, or undefined if the key is not allowed. */
  isKeyAllowed: (publicKey: SshPublicKey) => string | undefined;
}

export interface SessionRequest {
  method: string;
  body: Body;
  headers: Headers;
}

interface StoredSession {
  nodeId: string;
  secret: Buffer;
  expiresAt: number;
  identity: string | undefined;
}

/** A verified signed request: who signed it, and its nonce and timestamp (for a replay store). */
export interface VerifiedSignedRequest {
  nodeId: string;
  publicKey: SshPublicKey;
  nonce: string;
  /** Epoch ms, as signed; inside the window. */
  timestamp: number;
}

/** A verified session request: the session's node, and the identity that opened the session. */
export interface VerifiedSessionRequest {
  nodeId: string;
  identity: string | undefined;
}

/** SuperLink side: verifies signed and session requests, keeps sessions and the replay cache. */
export class RequestVerifier {
  readonly windowMs: number;
  readonly maxNonces: number;
  readonly maxNoncesPerNode: number;
  readonly sessionTtlMs: number;
  readonly maxSessionsPerNode: number;
  private readonly now: () => number;
  /**
   * Parsed keys of nodes that authenticated, by header value: importing a key costs ~0.1 ms in
   * OpenSSL 3, as much as the verify. Only authentic keys get in, so strangers cannot churn it;
   * registration is still asked of `isKeyAllowed` every time.
   */
  private readonly keyCache = new Map<string, SshPublicKey>();
  /** floor(timestamp / bucketMs) → nonces of authentic requests with such timestamps → node. */
  private readonly nonces = new Map<number, Map<string, string>>();
  /** Nonces remembered per node. */
  private readonly noncesByNode = new Map<string, number>();
  private readonly bucketMs: number;
  private nonceTotal = 0;
  private prunedAt = Number.NaN;
  private readonly sessions = new Map<string, StoredSession>();
  private readonly sessionsByNode = new Map<string, Set<string>>();
  private lastSessionSweep: number;

  constructor(options: RequestVerifierOptions = {}) {
    this.windowMs = options.windowMs ?? 60_000;
    this.maxNonces = options.maxNonces ?? 1_000_000;
    this.maxNoncesPerNode = options.maxNoncesPerNode ?? Math.max(1, Math.floor(this.maxNonces / 20));
    this.sessionTtlMs = options.sessionTtlMs ?? 3_600_000;
    this.maxSessionsPerNode = options.maxSessionsPerNode ?? 4;
    this.now = options.now ?? Date.now;
    if (
      !(this.windowMs > 0) ||
      !(this.maxNonces >= 1) ||
      !(this.sessionTtlMs > 0) ||
      !(this.maxSessionsPerNode >= 1)
    )
      throw new PollenError('INVALID_ARGUMENT', 'RequestVerifier options must be positive');
    this.bucketMs = Math.max(1, Math.ceil(this.windowMs / 60));
    this.lastSessionSweep = this.now();
  }

  /** Number of nonces currently remembered (for metrics). */
  get nonceCount(): number {
    return this.nonceTotal;
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  /**
   * Verify a request signed with a node key. Checks, cheapest first: headers, timestamp window,
   * key registration, signature, then records the nonce (only once the request is authentic,
   * so nobody can burn a node's nonce). Returns the node id `isKeyAllowed` gave.
   */
  verifySignedRequest(req: SignedRequest): VerifiedSignedRequest {
    const h = NODE_AUTH_HEADERS;
    const { timestamp, nonce } = this.commonHeaders(req.headers, [h.key, h.signature]);
    const keyB64 = req.headers[h.key]!;
    const signatureB64 = req.headers[h.signature]!;
    if (!KEY_RE.test(keyB64) || !SIGNATURE_RE.test(signatureB64))
      throw new PollenError('NODE_AUTH_INVALID', 'Malformed pollen-node-key or pollen-node-signature header');
    checkMethod(req.method);
    const now = this.now();
    const ts = this.checkTimestamp(timestamp, now);
    this.refuseSeenNonce(nonce, ts);

    let publicKey = this.keyCache.get(keyB64);
    if (!publicKey) {
      try {
        publicKey = parseSshPublicKeyBlob(Buffer.from(keyB64, 'base64'));
      } catch (e) {
        throw new PollenError(
          'NODE_AUTH_INVALID',
          'The pollen-node-key header is not an accepted public key',
          {
            cause: e,
            detail: e instanceof Error ? e.message : String(e),
          },
        );
      }
    }
    // Registration is checked before the signature: an unknown key costs no ECDSA verify.
    // (Public keys are not secret, so saying which are registered reveals nothing useful.)
    const nodeId = req.isKeyAllowed(publicKey);
    if (nodeId === undefined)
      throw new PollenError(
        'NODE_NOT_REGISTERED',
        'This SuperNode key is not registered with the SuperLink',
        {
          detail: `node key ${nodeIdFromPublicKey(publicKey)}`,
        },
      );

    const data = Buffer.from(canonicalString(req.method, req.body, timestamp, nonce));
    const signature = Buffer.from(signatureB64, 'base64url');
    let ok = false;
    try {
      ok = verify(
        ecdsaHashFor(publicKey),
        data,
        { key: publicKey.key, dsaEncoding: 'ieee-p1363' },
        signature,
      );
    } catch {
      ok = false; // wrong signature length for the curve
    }
    if (!ok) throw new PollenError('NODE_AUTH_INVALID', 'The request signature is not valid');
    this.rememberNonce(nonce, ts, now, nodeId);
    this.cacheKey(keyB64, publicKey);
    return { nodeId, publicKey, nonce, timestamp: ts };
  }

  /**
   * Create a session for a node that just passed `verifySignedRequest`. `identity` is that of the
   * connection that opened it (its client certificate name), returned by `verifySession` so the
   * caller can refuse the session on a connection with any other.
   */
  openSession(nodeId: string, identity?: string): NodeSession {
    const now = this.now();
    this.sweepSessions(now);
    const session: NodeSession = {
      sessionId: randomBytes(16).toString('base64url'),
      secret: randomBytes(32),
      nodeId,
      expiresAt: now + this.sessionTtlMs,
    };
    let ids = this.sessionsByNode.get(nodeId);
    if (!ids) {
      ids = new Set();
      this.sessionsByNode.set(nodeId, ids);
    }
    // A restarting node opens a new session each time: keep only its newest few.
    while (ids.size >= this.maxSessionsPerNode) {
      const oldest = ids.values().next().value as string;
      ids.delete(oldest);
      this.sessions.delete(oldest);
    }
    ids.add(session.sessionId);
    this.sessions.set(session.sessionId, {
      nodeId,
      secret: Buffer.from(session.secret),
      expiresAt: session.expiresAt,
      identity,
    });
    return session;
  }

  /** Verify a request within a session (HMAC); returns the session's node id. */
  verifySessionRequest(req: SessionRequest): string {
    return this.verifySession(req).nodeId;
  }

  /** Verify a request within a session (HMAC); returns the session's node and opening identity. */
  verifySession(req: SessionRequest): VerifiedSessionRequest {
    const h = NODE_AUTH_HEADERS;
    const { timestamp, nonce } = this.commonHeaders(req.headers, [h.session, h.mac]);
    const sessionId = req.headers[h.session]!;
    const macB64 = req.headers[h.mac]!;
    if (!SESSION_RE.test(sessionId) || !MAC_RE.test(macB64))
      throw new PollenError('NODE_AUTH_INVALID', 'Malformed pollen-node-session or pollen-node-mac header');
    checkMethod(req.method);
    const now = this.now();
    const ts = this.checkTimestamp(timestamp, now);
    this.refuseSeenNonce(nonce, ts);

    const session = this.sessions.get(sessionId);
    if (!session || session.expiresAt <= now) {
      if (session) this.dropSession(sessionId, session.nodeId);
      throw new PollenError('NODE_SESSION_EXPIRED', 'The SuperNode session is unknown or expired');
    }
    const expected = createHmac('sha256', session.secret)
      .update(canonicalString(req.method, req.body, timestamp, nonce))
      .digest();
    if (!timingSafeEqual(expected, Buffer.from(macB64, 'base64url')))
      throw new PollenError('NODE_AUTH_INVALID', 'The request MAC is not valid');
    this.rememberNonce(nonce, ts, now, session.nodeId);
    return { nodeId: session.nodeId, identity: session.identity };
  }

  private cacheKey(header: string, key: SshPublicKey): void {
    if (this.keyCache.has(header)) return;
    if (this.keyCache.size >= KEY_CACHE_SIZE)
      this.keyCache.delete(this.keyCache.keys().next().value as string);
    this.keyCache.set(header, key);
  }

  /** Drop every session of a node at once (its key was unregistered). Returns how many. */
  revokeSessionsFor(nodeId: string): number {
    const ids = this.sessionsByNode.get(nodeId);
    if (!ids) return 0;
    for (const id of ids) this.sessions.delete(id);
    this.sessionsByNode.delete(nodeId);
    return ids.size;
  }

  private commonHeaders(headers: Headers, specific: string[]): { timestamp: string; nonce: string } {
    const h = NODE_AUTH_HEADERS;
    const missing = [...specific, h.timestamp, h.nonce].filter((name) => !headers[name]);
    if (missing.length > 0)
      throw new PollenError(
        'NODE_AUTH_MISSING',
        `Missing request authentication header ${missing.join(', ')}`,
      );
    const timestamp = headers[h.timestamp]!;
    const nonce = headers[h.nonce]!;
    if (!TIMESTAMP_RE.test(timestamp) || !NONCE_RE.test(nonce))
      throw new PollenError(
        'NODE_AUTH_INVALID',
        'Malformed pollen-node-timestamp or pollen-node-nonce header',
      );
    return { timestamp, nonce };
  }

  private checkTimestamp(timestamp: string, now: number): number {
    const ts = Number(timestamp);
    if (Math.abs(ts - now) > this.windowMs)
      throw new PollenError('NODE_AUTH_STALE', 'The request timestamp is outside the accepted window', {
        detail: `timestamp ${ts}, now ${now}, window ±${this.windowMs} ms`,
      });
    return ts;
  }

  /**
   * Record an authentic request's nonce. A replay repeats the signed timestamp too, so nonces
   * are filed in buckets by timestamp (windowMs/60 wide) and a bucket is dropped whole once all
   * its timestamps are stale: O(1) per request, memory within one bucket of the minimum.
   */
  private rememberNonce(nonce: string, ts: number, now: number, nodeId: string): void {
    this.pruneNonces(now);
    this.refuseSeenNonce(nonce, ts);
    const mine = this.noncesByNode.get(nodeId) ?? 0;
    if (mine >= this.maxNoncesPerNode)
      throw new PollenError('RATE_LIMITED', 'This node sent too many requests within the replay window', {
        hint: 'Slow down; each node may have a bounded number of requests in flight per window.',
        detail: `${mine} nonces of node ${nodeId} remembered (maxNoncesPerNode), window ${this.windowMs} ms`,
      });
    if (this.nonceTotal >= this.maxNonces)
      throw new PollenError('RATE_LIMITED', 'Too many requests within the replay window', {
        hint: 'Wait and try again; the SuperLink remembers a bounded number of request nonces per window.',
        detail: `${this.nonceTotal} nonces remembered (maxNonces), window ${this.windowMs} ms`,
      });
    const key = Math.floor(ts / this.bucketMs);
    let bucket = this.nonces.get(key);
    if (!bucket) {
      bucket = new Map();
      this.nonces.set(key, bucket);
    }
    bucket.set(nonce, nodeId);
    this.noncesByNode.set(nodeId, mine + 1);
    this.nonceTotal++;
  }

  /** Cheap early refusal; safe before the crypto check because only authentic nonces are stored. */
  private refuseSeenNonce(nonce: string, ts: number): void {
    if (this.nonces.get(Math.floor(ts / this.bucketMs))?.has(nonce))
      throw new PollenError('NODE_AUTH_REPLAY', 'This request nonce was already used');
  }

  private pruneNonces(now: number): void {
    const current = Math.floor(now / this.bucketMs);
    if (current === this.prunedAt) return;
    this.prunedAt = current;
    for (const [key, bucket] of this.nonces) {
      // Every timestamp in the bucket is below (key + 1) · bucketMs: stale once that + window < now.
      if ((key + 1) * this.bucketMs + this.windowMs < now) {
        this.nonceTotal -= bucket.size;
        this.nonces.delete(key);
        for (const nodeId of bucket.values()) {
          const left = (this.noncesByNode.get(nodeId) ?? 1) - 1;
          if (left > 0) this.noncesByNode.set(nodeId, left);
          else this.noncesByNode.delete(nodeId);
        }
      }
    }
  }

  private sweepSessions(now: number): void {
    if (now - this.lastSessionSweep < Math.min(this.sessionTtlMs, 60_000)) return;
    this.lastSessionSweep = now;
    for (const [id, s] of this.sessions) if (s.expiresAt <= now) this.dropSession(id, s.nodeId);
  }

  private dropSession(sessionId: string, nodeId: string): void {
    this.sessions.delete(sessionId);
    const ids = this.sessionsByNode.get(nodeId);
    ids?.delete(sessionId);
    if (ids?.size === 0) this.sessionsByNode.delete(nodeId);
  }
}
