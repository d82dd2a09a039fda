/**
 * Moving sets of content-addressed chunks over a ChunkTransport (chunk-transport.ts: the bulk
 * route or the chunk RPCs, handed in explicitly): uploads that send only what the peer lacks, or
 * hash a model's pieces while the previous ones are on the wire, and downloads that verify every
 * chunk and hand it on as it arrives. Memory stays O(chunk): chunks are read from their source
 * one at a time and sent as views, never copied.
 */
import { PollenError } from '../errors.js';
import type { Message } from '../sdk/message.js';
import { BULK_CONCURRENCY } from './bulk-protocol.js';
import { MAX_IDS_PER_REQUEST } from './chunk-rpc.js';
import {
  type ChunkCallOptions,
  type ChunkFeed,
  type ChunkInit,
  type ChunkTransport,
  transferCancelled,
} from './chunk-transport.js';
import { assertChunkId, CHUNK_SIZE, type ChunkStore, chunkId, hasVerifiedPut } from './chunks.js';
import { messagePieces, messageToWire, type ToWireOptions, type ToWireResult } from './wire.js';

export interface TransferProgress {
  /** Chunks sent or received so far. */
  chunks: number;
  bytes: number;
  /** Chunks this transfer will move. */
  total: number;
}

export interface TransferOptions extends ChunkCallOptions {
  onProgress?: (progress: TransferProgress) => void;
  /** Ids per MissingChunks / PullChunks request (default and most: 1000). */
  batchSize?: number;
}

export type UploadSource = Map<string, Uint8Array> | { ids: string[]; source: Pick<ChunkStore, 'get'> };

export interface UploadResult {
  /** Chunks pushed. */
  sent: number;
  bytes: number;
  /** Chunks the peer already held. */
  skipped: number;
}

function batchSizeOf(options: TransferOptions): number {
  const n = options.batchSize ?? MAX_IDS_PER_REQUEST;
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_IDS_PER_REQUEST)
    throw new PollenError('INVALID_ARGUMENT', `batchSize must be 1-${MAX_IDS_PER_REQUEST}`);
  return n;
}

/** What one chunk request needs of a transfer's options. */
function callOptions(options: ChunkCallOptions): ChunkCallOptions {
  return { signal: options.signal, scope: options.scope };
}

/**
 * Send the chunks the peer lacks: MissingChunks in batches, then only the missing chunks, read
 * from `chunks` one at a time (over the RPCs: ONE PushChunks stream).
 */
export async function uploadChunks(
  transport: ChunkTransport,
  chunks: UploadSource,
  options: TransferOptions = {},
): Promise<UploadResult> {
  const batch = batchSizeOf(options);
  const ids = [...new Set(chunks instanceof Map ? chunks.keys() : chunks.ids)];
  for (const id of ids) assertChunkId(id);
  const missing: string[] = [];
  for (let i = 0; i < ids.length; i += batch) {
    const asked = ids.slice(i, i + batch);
    const answer = await transport.missing(asked, callOptions(options));
    // Only ever push what we asked about, whatever the peer answers.
    const askedSet = new Set(asked);
    for (const id of new Set(answer)) if (askedSet.has(id)) missing.push(id);
  }
  const result: UploadResult = { sent: 0, bytes: 0, skipped: ids.length - missing.length };
  if (missing.length === 0) return result;
  let next = 0;
  const feed: ChunkFeed = async () => {
    if (next >= missing.length) return undefined;
    const id = missing[next++]!;
    const data = chunks instanceof Map ? chunks.get(id) : await chunks.source.get(id);
    if (data === undefined) throw new PollenError('CHUNK_MISSING', `Chunk ${id} is not available to send`);
    return { id, data };
  };
  await transport.push(feed, {
    ...callOptions(options),
    onSent: (c) => {
      result.sent++;
      result.bytes += c.data.byteLength;
      options.onProgress?.({ chunks: result.sent, bytes: result.bytes, total: missing.length });
    },
  });
  return result;
}

export interface PipelinedUploadOptions extends TransferOptions {
  /**
   * Which chunks are new to the peer, so that each is PUT as soon as it is hashed, without a
   * MissingChunks round trip: `true` for a freshly produced model (a training result), or a
   * test per id (e.g. "not sent before"). The others are asked about with MissingChunks while
   * hashing goes on. A chunk the peer holds after all costs one PUT, which the bulk route answers
   * as soon as it sees the id is held. Default false (ask about every chunk).
   */
  fresh?: boolean | ((id: string) => boolean);
  /** Chunks hashed ahead of the uploads while all of them are busy (default 1). */
  ahead?: number;
  /** Chunks in flight (default BULK_CONCURRENCY, 4). */
  concurrency?: number;
}

export interface PiecesUploadResult extends UploadResult {
  /** The chunk id of every piece, in the order given (repeats included). */
  ids: string[];
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function positiveInt(name: string, n: number): number {
  if (!Number.isSafeInteger(n) || n < 1) throw new PollenError('INVALID_ARGUMENT', `${name} must be ≥ 1`);
  return n;
}

/**
 * Hash `pieces` and upload them at once, overlapped: piece k+1 is hashed while piece k is on the
 * wire (the hasher yields to I/O between pieces and stays at most `ahead` chunks in front of the
 * uploads), so the peer starts receiving after one piece's hash instead of the whole model's.
 * The pieces are sent as they are (views, never copied) and identical pieces once. Resolves with
 * the id of every piece (for messageToWire's `pieceIds`) once every chunk is stored; the first
 * failure rejects, cancels the chunks in flight and stops the hashing.
 *
 * So over a transport that sends a chunk per request (the bulk route: `perChunk`); over the RPCs
 * the pieces are hashed first and go through uploadChunks (every chunk is asked about).
 */
export async function uploadPieces(
  transport: ChunkTransport,
  pieces: readonly Uint8Array[],
  options: PipelinedUploadOptions = {},
): Promise<PiecesUploadResult> {
  const batch = batchSizeOf(options);
  const ahead = positiveInt('ahead', options.ahead ?? 1);
  const concurrency = positiveInt('concurrency', options.concurrency ?? BULK_CONCURRENCY);
  const fresh = options.fresh ?? false;
  // Once the bulk route turns out to be missing, the RPCs carry every byte: ask about the rest.
  const isFresh = (id: string): boolean =>
    transport.perChunk && (typeof fresh === 'function' ? fresh(id) : fresh);
  const ids: string[] = new Array<string>(pieces.length);
  if (!transport.perChunk) {
    for (let i = 0; i < pieces.length; i++) ids[i] = chunkId(pieces[i]!);
    const chunks = new Map<string, Uint8Array>();
    ids.forEach((id, i) => {
      if (!chunks.has(id)) chunks.set(id, pieces[i]!);
    });
    return { ids, ...(await uploadChunks(transport, chunks, options)) };
  }
  const result: PiecesUploadResult = { ids, sent: 0, bytes: 0, skipped: 0 };
  if (pieces.length === 0) return result;

  const inner = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, inner.signal]) : inner.signal;
  const seen = new Set<string>();
  /** Hashed, to be sent. */
  const ready: ChunkInit[] = [];
  /** Hashed, to be asked about with MissingChunks. */
  const unchecked: ChunkInit[] = [];
  let hashed = 0;
  let checking = false;
  let failure: { error: unknown } | undefined;
  let waiters: (() => void)[] = [];
  const changed = (): Promise<void> => new Promise((resolve) => waiters.push(resolve));
  const notify = (): void => {
    const w = waiters;
    waiters = [];
    for (const wake of w) wake();
  };
  const fail = (error: unknown): void => {
    if (!failure) {
      failure = { error };
      inner.abort();
    }
    notify();
  };
  const done = (): boolean => hashed === pieces.length && !checking && unchecked.length === 0;

  const check = (): void => {
    if (checking || failure || unchecked.length === 0) return;
    const asked = unchecked.splice(0, batch);
    checking = true;
    transport
      .missing(
        asked.map((c) => c.id),
        { signal, scope: options.scope },
      )
      .then(
        (answer) => {
          const missing = new Set(answer);
          for (const c of asked) {
            if (missing.has(c.id)) ready.push(c);
            else result.skipped++;
          }
          checking = false;
          check();
          notify();
        },
        (e) => {
          checking = false;
          fail(e);
        },
      );
  };

  const hasher = async (): Promise<void> => {
    while (hashed < pieces.length) {
      while (!failure && ready.length + unchecked.length >= ahead) await changed();
      if (failure) return;
      await nextTurn(); // let the socket and the responses move between two hashes
      if (failure) return;
      if (options.signal?.aborted) return fail(transferCancelled());
      const data = pieces[hashed]!;
      const id = chunkId(data);
      ids[hashed++] = id;
      if (!seen.has(id)) {
        seen.add(id);
        if (isFresh(id)) ready.push({ id, data });
        else {
          unchecked.push({ id, data });
          check();
        }
      }
      notify();
    }
  };

  /** The next hashed chunk the peer lacks, once there is one; undefined when all are sent. */
  const feed: ChunkFeed = async () => {
    for (;;) {
      if (failure) return undefined;
      const c = ready.shift();
      if (c !== undefined) {
        notify(); // room for the hasher
        return c;
      }
      if (done()) return undefined;
      await changed();
    }
  };

  await Promise.all([
    hasher().catch(fail),
    transport
      .push(feed, {
        signal,
        scope: options.scope,
        concurrency,
        onSent: (c) => {
          result.sent++;
          result.bytes += c.data.byteLength;
          options.onProgress?.({
            chunks: result.sent,
            bytes: result.bytes,
            total: seen.size - result.skipped, // grows while hashing goes on
          });
        },
      })
      .catch(fail),
  ]);
  if (failure) throw failure.error;
  return result;
}

export interface MessagesUploadOptions extends PipelinedUploadOptions {
  /** How the messages are cut into chunks (messageToWire's inlineMax and chunkSize). */
  toWire?: Omit<ToWireOptions, 'pieceIds'>;
}

/**
 * messageToWire for each message, with its chunks uploaded while they are hashed (uploadPieces):
 * once this resolves, every chunk the wire messages name is held by the peer, so they can be
 * pushed. The arrays must not change until then (the chunks are views into them).
 */
export async function uploadMessages(
  transport: ChunkTransport,
  messages: readonly Message[],
  options: MessagesUploadOptions = {},
): Promise<{ wires: ToWireResult[]; upload: UploadResult }> {
  const pieces = messages.map((m) => messagePieces(m, options.toWire));
  const { ids, ...upload } = await uploadPieces(transport, pieces.flat(), options);
  let at = 0;
  const wires = messages.map((m, k) => {
    const n = pieces[k]!.length;
    at += n;
    return messageToWire(m, { ...options.toWire, pieceIds: ids.slice(at - n, at) });
  });
  return { wires, upload };
}

/** uploadMessages for one message. */
export async function uploadMessage(
  transport: ChunkTransport,
  message: Message,
  options: MessagesUploadOptions = {},
): Promise<ToWireResult & { upload: UploadResult }> {
  const { wires, upload } = await uploadMessages(transport, [message], options);
  return { ...wires[0]!, upload };
}

export interface PullOptions extends TransferOptions {
  /** Largest chunk accepted from the peer (default CHUNK_SIZE). */
  maxChunkBytes?: number;
}

/**
 * The chunks `ids`, hash-verified, as they arrive. Throws CHUNK_MISMATCH on a bad or unrequested
 * chunk and CHUNK_MISSING if the peer left some out. Usable directly as the chunk stream of
 * messageFromWireStreaming (with `verified: true`).
 */
export async function* pullChunkStream(
  transport: ChunkTransport,
  ids: string[],
  options: PullOptions = {},
): AsyncGenerator<ChunkInit> {
  const batchSize = batchSizeOf(options);
  const wanted = [...new Set(ids)];
  for (const id of wanted) assertChunkId(id);
  if (wanted.length === 0) return;
  let chunks = 0;
  let bytes = 0;
  for await (const chunk of transport.pull(wanted, {
    ...callOptions(options),
    batchSize,
    maxChunkBytes: options.maxChunkBytes ?? CHUNK_SIZE,
  })) {
    chunks++;
    bytes += chunk.data.byteLength;
    yield chunk;
    options.onProgress?.({ chunks, bytes, total: wanted.length });
  }
}

export interface DownloadResult {
  received: number;
  bytes: number;
  /** Chunks the store already held (only when `into` is a store). */
  skipped: number;
}

/**
 * Fetch chunks into a store (only those it lacks) or hand each verified chunk to a callback,
 * e.g. one that copies it into a preallocated array.
 */
export async function downloadChunks(
  transport: ChunkTransport,
  ids: string[],
  into: ChunkStore | ((id: string, data: Uint8Array) => void | Promise<void>),
  options: PullOptions = {},
): Promise<DownloadResult> {
  const unique = [...new Set(ids)];
  const wanted = typeof into === 'function' ? unique : await into.missing(unique);
  const result: DownloadResult = { received: 0, bytes: 0, skipped: unique.length - wanted.length };
  for await (const { id, data } of pullChunkStream(transport, wanted, options)) {
    if (typeof into === 'function') await into(id, data);
    else if (hasVerifiedPut(into)) await into.putVerified(id, data);
    else await into.put(id, data);
    result.received++;
    result.bytes += data.byteLength;
  }
  return result;
}
