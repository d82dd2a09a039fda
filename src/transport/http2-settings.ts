/**
 * HTTP/2 flow-control windows and message limits, the same for Pollen's RPC servers
 * (rpc-server.ts) and clients (rpc-client.ts): a module of its own, so a client does not load
 * the server side to read them.
 */
import type http2 from 'node:http2';

export const STREAM_WINDOW = 16 << 20;
export const SESSION_WINDOW = 64 << 20;
/**
 * Memory nghttp2 may hold per session, in MB (Node's default, 10, is below one session window:
 * with several 4 MiB chunks in flight a peer gets NGHTTP2_ENHANCE_YOUR_CALM).
 */
export const MAX_SESSION_MEMORY_MB = 128;
/** Largest single RPC message: a 4 MiB chunk plus framing, or a message batch. */
export const MAX_MESSAGE_BYTES = 32 << 20;

/** HTTP/2 settings for http2.createSecureServer / http2.connect: wide stream windows. */
export const HTTP2_SETTINGS: http2.Settings = Object.freeze({ initialWindowSize: STREAM_WINDOW });
