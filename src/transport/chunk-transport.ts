/**
 * How chunk bytes travel to and from one peer. Two transports implement it: the bulk route
 * (bulk-client.ts bulkChunkTransport: one PUT or GET per chunk, several in flight) and the three
 * chunk RPCs every service shares (chunk-rpc.ts rpcChunkTransport: MissingChunks, PushChunks,
 * PullChunks). Whoever opens the connection picks one (RpcChannel.chunks) and hands it to the
 * transfer functions (chunk-transfer.ts), which decide what to send and report progress.
 */
import { PollenError } from '../errors.js';
import type { ChunkScopeHint } from './bulk-protocol.js';

/** One chunk: its id (the SHA-256 of `data`, hex) and its bytes. */
export interface ChunkInit {
  id: string;
  data: Uint8Array;
}

/** What every chunk request may carry. */
export interface ChunkCallOptions {
  signal?: AbortSignal;
  /**
   * The run (and, for a reader, the uploading node) the chunks belong to: a SuperLink keeps a
   * run's chunks in scopes of that run (superlink/relay-chunks.ts). Sent as request headers.
   */
  scope?: ChunkScopeHint;
}

export interface ChunkPushOptions extends ChunkCallOptions {
  /** Chunks in flight, where each travels on its own request (default BULK_CONCURRENCY, 4). */
  concurrency?: number;
  /**
   * After each chunk is sent: stored by the peer (bulk route), or handed to the one PushChunks
   * stream (RPCs, whose peer acknowledges the stream as a whole when push resolves).
   */
  onSent?(chunk: ChunkInit): void;
}

export interface ChunkPullOptions extends ChunkCallOptions {
  /** Largest chunk accepted from the peer (default CHUNK_SIZE). */
  maxChunkBytes?: number;
  /** Ids per request, where a transport asks for several at once (the RPCs; default 1000). */
  batchSize?: number;
}

/**
 * The next chunk to send, or undefined when there are no more. Several senders may wait on it at
 * once; it may wait itself (e.g. until the chunk is hashed). A rejection fails the push.
 */
export type ChunkFeed = () => Promise<ChunkInit | undefined>;

/**
 * How chunks move between this process and one peer, passed explicitly to whoever transfers
 * them (uploadChunks, uploadPieces, downloadChunks, …): the bulk route or the chunk RPCs. Every
 * method rejects with a PollenError carrying the peer's stable code (CHUNK_MISMATCH,
 * CHUNK_QUOTA_EXCEEDED, …); a cancelled `signal` rejects with UNAVAILABLE.
 *
 * @example
 * const channel = openChannel({ baseUrl, tls });
 * const fleet = channel.client(Fleet);
 * const chunks = channel.chunks(fleet); // the bulk route, over the RPCs if the server has none
 * await uploadChunks(chunks, wire.chunks, { scope: { runId } });
 * await downloadChunks(rpcChunkTransport(fleet), ids, store); // the RPCs, explicitly
 */
export interface ChunkTransport {
  /**
   * True when each chunk travels on its own request, several in flight, and the peer answers a
   * push of a chunk it already holds before its bytes cross (the bulk route): uploadPieces then
   * sends each chunk as soon as it is hashed, and a chunk most likely new (`fresh`) without asking
   * `missing` first. False for the RPCs, one stream that carries every byte pushed: uploadPieces
   * names every chunk first and sends only those `missing` names.
   */
  readonly perChunk: boolean;
  /** Which of `ids` (valid ids, at most 1000) the peer does not hold. */
  missing(ids: string[], options?: ChunkCallOptions): Promise<string[]>;
  /**
   * Send every chunk `next` gives until it gives undefined, as they come (views, never copied);
   * resolves once the peer holds them all. The first failure rejects and cancels the chunks in
   * flight; `next` is not called after it.
   */
  push(next: ChunkFeed, options?: ChunkPushOptions): Promise<void>;
  /**
   * The chunks `ids` (distinct, valid), each verified against its id and `maxChunkBytes`
   * (CHUNK_MISMATCH, CHUNK_TOO_LARGE), handed on as they arrive; CHUNK_MISSING if the peer lacks
   * one. Stopping early (break, error) cancels what is in flight.
   */
  pull(ids: string[], options?: ChunkPullOptions): AsyncIterable<ChunkInit>;
}

/** The failure of a request cancelled by its signal. */
export function transferCancelled(): PollenError {
  return new PollenError('UNAVAILABLE', 'The chunk transfer was cancelled');
}
