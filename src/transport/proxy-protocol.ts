/**
 * The PROXY protocol header (HAProxy's spec, versions 1 and 2) that a TCP proxy such as nginx's
 * `stream` module sends before the client's bytes, so that a server behind it learns the real
 * client address. Pure parsing: which connections must (or must not) carry one is decided in
 * proxy-listener.ts.
 *
 * Every length a peer controls is checked before anything is allocated: a version 1 header is at
 * most 107 bytes, a version 2 header at most MAX_V2_BYTES (its own length field allows 64 KiB).
 */
import { isIP, SocketAddress } from 'node:net';

/** The version 2 signature: twelve bytes no TLS ClientHello or HTTP request starts with. */
export const V2_SIGNATURE = Buffer.from([
  0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
]);
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
/** The longest version 1 line the spec allows, CRLF included. */
export const MAX_V1_BYTES = 107;
/** The longest version 2 header accepted: addresses plus a few TLVs (a proxy sends far less). */
export const MAX_V2_BYTES = 4096;

export interface ProxiedAddress {
  address: string;
  port: number;
  family: 'IPv4' | 'IPv6';
}

export type ProxyHeader =
  /** A proxied client: `source` is who connected to the proxy. */
  | { kind: 'proxied'; version: 1 | 2; source: ProxiedAddress; destination: ProxiedAddress }
  /** The proxy's own connection (v2 LOCAL, v1 UNKNOWN, or a non-IP family): no client address. */
  | { kind: 'local'; version: 1 | 2 };

export type ParseResult =
  | { status: 'ok'; header: ProxyHeader; length: number }
  /** More bytes are needed (still within the size limit). */
  | { status: 'incomplete' }
  | { status: 'invalid'; reason: string };

/**
 * Whether `bytes` (the first bytes of a connection) start a PROXY header: 'maybe' when they are
 * too few to tell. A TLS record starts with 0x16, so one byte usually decides.
 */
export function startsProxyHeader(bytes: Buffer): 'yes' | 'no' | 'maybe' {
  for (const prefix of [V1_PREFIX, V2_SIGNATURE]) {
    const n = Math.min(bytes.length, prefix.length);
    if (bytes.subarray(0, n).equals(prefix.subarray(0, n))) return n === prefix.length ? 'yes' : 'maybe';
  }
  return 'no';
}

/** Parse the PROXY header at the start of `bytes`; `length` is how many bytes it took. */
export function parseProxyHeader(bytes: Buffer): ParseResult {
  const start = startsProxyHeader(bytes);
  if (start === 'no')
    return { status: 'invalid', reason: 'the connection does not start with a PROXY header' };
  if (start === 'maybe') return { status: 'incomplete' };
  return bytes[0] === V1_PREFIX[0] ? parseV1(bytes) : parseV2(bytes);
}

const invalid = (reason: string): ParseResult => ({ status: 'invalid', reason });

function parseV1(bytes: Buffer): ParseResult {
  const end = bytes.subarray(0, MAX_V1_BYTES).indexOf('\r\n');
  if (end < 0)
    return bytes.length >= MAX_V1_BYTES
      ? invalid(`PROXY v1 header longer than ${MAX_V1_BYTES} bytes`)
      : { status: 'incomplete' };
  const line = bytes.subarray(0, end).toString('latin1');
  const fields = line.split(' ');
  const length = end + 2;
  if (fields[1] === 'UNKNOWN') return { status: 'ok', header: { kind: 'local', version: 1 }, length };
  const [, proto, src, dst, sport, dport] = fields;
  if (fields.length !== 6 || (proto !== 'TCP4' && proto !== 'TCP6'))
    return invalid(`malformed PROXY v1 header "${printable(line)}"`);
  const family = proto === 'TCP4' ? 'IPv4' : 'IPv6';
  const version = family === 'IPv4' ? 4 : 6;
  const sp = port(sport);
  const dp = port(dport);
  if (isIP(src ?? '') !== version || isIP(dst ?? '') !== version || sp === undefined || dp === undefined)
    return invalid(`malformed PROXY v1 header "${printable(line)}"`);
  return {
    status: 'ok',
    header: {
      kind: 'proxied',
      version: 1,
      source: { address: src as string, port: sp, family },
      destination: { address: dst as string, port: dp, family },
    },
    length,
  };
}

function port(text: string | undefined): number | undefined {
  if (!text || !/^(0|[1-9]\d{0,4})$/.test(text)) return undefined;
  const n = Number(text);
  return n <= 65535 ? n : undefined;
}

/** The log shows a refused line as sent, without letting it forge log lines. */
function printable(line: string): string {
  return line.replace(/[^\x20-\x7e]/g, '?').slice(0, MAX_V1_BYTES);
}

const FIXED_V2 = 16;

function parseV2(bytes: Buffer): ParseResult {
  if (bytes.length < FIXED_V2) return { status: 'incomplete' };
  const versionCommand = bytes[12] as number;
  const familyProtocol = bytes[13] as number;
  const length = FIXED_V2 + bytes.readUInt16BE(14);
  if (versionCommand >> 4 !== 2) return invalid(`PROXY v2 header with version ${versionCommand >> 4}`);
  if (length > MAX_V2_BYTES) return invalid(`PROXY v2 header of ${length} bytes (at most ${MAX_V2_BYTES})`);
  const command = versionCommand & 0x0f;
  if (command > 1) return invalid(`PROXY v2 header with command ${command}`);
  if (bytes.length < length) return { status: 'incomplete' };
  if (command === 0) return { status: 'ok', header: { kind: 'local', version: 2 }, length };
  const body = bytes.subarray(FIXED_V2, length);
  const tcp = TCP_FAMILIES[familyProtocol];
  if (tcp) {
    // Source and destination address, then source and destination port.
    if (body.length < 2 * tcp.size + 4)
      return invalid(`PROXY v2 ${tcp.name} header too short for its addresses`);
    const ports = 2 * tcp.size;
    return {
      status: 'ok',
      header: {
        kind: 'proxied',
        version: 2,
        source: { address: tcp.read(body, 0), port: body.readUInt16BE(ports), family: tcp.family },
        destination: {
          address: tcp.read(body, tcp.size),
          port: body.readUInt16BE(ports + 2),
          family: tcp.family,
        },
      },
      length,
    };
  }
  // UNSPEC, or a Unix stream socket: the proxy's own connection, no client address to believe.
  if (familyProtocol === 0x00 || familyProtocol === 0x31)
    return { status: 'ok', header: { kind: 'local', version: 2 }, length };
  return invalid(`PROXY v2 header for transport 0x${familyProtocol.toString(16).padStart(2, '0')} (not TCP)`);
}

/** The version 2 family/transport bytes of TCP: address size and how to read one. */
const TCP_FAMILIES: Record<
  number,
  { name: string; size: number; family: ProxiedAddress['family']; read: (b: Buffer, at: number) => string }
> = {
  17: { name: 'TCP4', size: 4, family: 'IPv4', read: (b, at) => ipv4(b, at) },
  33: { name: 'TCP6', size: 16, family: 'IPv6', read: (b, at) => ipv6(b, at) },
};

const ipv4 = (b: Buffer, at: number): string => Array.from(b.subarray(at, at + 4)).join('.');

/** Written as Node writes addresses (`::1`, `::ffff:10.0.0.1`), so rules and logs compare equal. */
function ipv6(b: Buffer, at: number): string {
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) groups.push(b.readUInt16BE(at + 2 * i).toString(16));
  return new SocketAddress({ address: groups.join(':'), family: 'ipv6' }).address;
}
