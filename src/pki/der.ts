/**
 * A minimal DER encoder and reader for the two hot paths of enrollment: reading a CSR and
 * writing a site certificate from a fixed profile. General X.509 work (CA creation, CRLs,
 * parsing arbitrary certificates) uses @peculiar/x509; this exists because that library spends
 * ~2 ms of CPU per certificate, and the Certificate Service must sign over 1,000 a second.
 * Tests check everything made here with OpenSSL and with @peculiar/x509.
 */

export class DerError extends Error {}

function lengthBytes(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

export function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = content.length === 1 ? content[0]! : Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), lengthBytes(body.length), body]);
}

export const seq = (...items: Buffer[]) => tlv(0x30, ...items);
export const set = (...items: Buffer[]) => tlv(0x31, ...items);
export const octets = (b: Buffer) => tlv(0x04, b);
export const utf8 = (s: string) => tlv(0x0c, Buffer.from(s, 'utf8'));
export const ia5 = (s: string) => tlv(0x16, Buffer.from(s, 'ascii'));
export const bool = (v: boolean) => tlv(0x01, Buffer.from([v ? 0xff : 0]));
export const nul = () => Buffer.from([0x05, 0x00]);
/** Context-specific tag: constructed (explicit or a constructed implicit type) or primitive. */
export const ctx = (n: number, constructed: boolean, ...content: Buffer[]) =>
  tlv(0x80 | (constructed ? 0x20 : 0) | n, ...content);

export function bitString(bytes: Buffer, unusedBits = 0): Buffer {
  return tlv(0x03, Buffer.from([unusedBits]), bytes);
}

/** A non-negative INTEGER from big-endian bytes (hex string or buffer). */
export function uint(value: Buffer | string | number): Buffer {
  let b =
    typeof value === 'number'
      ? Buffer.from([value])
      : typeof value === 'string'
        ? Buffer.from(value.length % 2 ? `0${value}` : value, 'hex')
        : value;
  let i = 0;
  while (i < b.length - 1 && b[i] === 0 && (b[i + 1]! & 0x80) === 0) i++;
  b = b.subarray(i);
  if (b[0]! & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return tlv(0x02, b);
}

const oidCache = new Map<string, Buffer>();
export function oid(dotted: string): Buffer {
  const hit = oidCache.get(dotted);
  if (hit) return hit;
  const parts = dotted.split('.').map(Number);
  const bytes: number[] = [40 * parts[0]! + parts[1]!];
  for (const p of parts.slice(2)) {
    const chunk: number[] = [];
    let v = p;
    do {
      chunk.unshift((v & 0x7f) | (chunk.length ? 0x80 : 0));
      v = Math.floor(v / 128);
    } while (v > 0);
    bytes.push(...chunk);
  }
  const out = tlv(0x06, Buffer.from(bytes));
  oidCache.set(dotted, out);
  return out;
}

export function decodeOid(content: Buffer): string {
  if (content.length === 0) throw new DerError('empty OID');
  const first = content[0]!;
  const parts = first < 80 ? [Math.floor(first / 40), first % 40] : [2, first - 80];
  let v = 0;
  for (let i = 1; i < content.length; i++) {
    const b = content[i]!;
    v = v * 128 + (b & 0x7f);
    if (!(b & 0x80)) {
      parts.push(v);
      v = 0;
    } else if (i === content.length - 1) throw new DerError('truncated OID');
  }
  return parts.join('.');
}

/** UTCTime until 2049, GeneralizedTime after (RFC 5280 4.1.2.5). */
export function time(d: Date): Buffer {
  const iso = d.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const s =
    iso.slice(0, 4) +
    iso.slice(5, 7) +
    iso.slice(8, 10) +
    iso.slice(11, 13) +
    iso.slice(14, 16) +
    iso.slice(17, 19);
  return d.getUTCFullYear() < 2050
    ? tlv(0x17, Buffer.from(`${s.slice(2)}Z`))
    : tlv(0x18, Buffer.from(`${s}Z`));
}

/** One decoded element: its tag, the whole encoding and the content. */
export interface Tlv {
  tag: number;
  raw: Buffer;
  content: Buffer;
}

/** Read one element at `offset`; strict about lengths (definite, minimal, in bounds). */
export function read(buf: Buffer, offset = 0): Tlv {
  if (offset + 2 > buf.length) throw new DerError('truncated');
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('high tag numbers are not used here');
  let len = buf[offset + 1]!;
  let header = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new DerError('unsupported length');
    if (offset + 2 + n > buf.length) throw new DerError('truncated length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[offset + 2 + i]!;
    if (len < 0x80 || (n > 1 && buf[offset + 2] === 0)) throw new DerError('non-minimal length');
    header += n;
  }
  const end = offset + header + len;
  if (end > buf.length) throw new DerError('length beyond the data');
  return { tag, raw: buf.subarray(offset, end), content: buf.subarray(offset + header, end) };
}

/** The children of a constructed element, which must exactly fill it. */
export function children(t: Tlv): Tlv[] {
  const out: Tlv[] = [];
  let off = 0;
  while (off < t.content.length) {
    const c = read(t.content, off);
    out.push(c);
    off += c.raw.length;
  }
  return out;
}

export function expect(t: Tlv | undefined, tag: number, what: string): Tlv {
  if (!t || t.tag !== tag) throw new DerError(`expected ${what}`);
  return t;
}

/** Read a whole buffer as exactly one element (no trailing bytes). */
export function readOne(buf: Buffer): Tlv {
  const t = read(buf, 0);
  if (t.raw.length !== buf.length) throw new DerError('trailing data');
  return t;
}

/** The string value of the first attribute with this OID in a Name. */
export function nameField(name: Tlv, attrOid: string): string | undefined {
  return nameFields(name, attrOid)[0];
}

/** Every value of one attribute in a Name, in order (a subject may repeat an attribute). */
export function nameFields(name: Tlv, attrOid: string): string[] {
  const values: string[] = [];
  for (const rdn of children(name)) {
    for (const atv of children(rdn)) {
      const [type, value] = children(atv);
      if (type && value && type.tag === 0x06 && decodeOid(type.content) === attrOid)
        // BMPString (0x1e) is UTF-16 big-endian; the other string types here are UTF-8 compatible.
        values.push(
          value.tag === 0x1e
            ? Buffer.from(value.content).swap16().toString('utf16le')
            : value.content.toString('utf8'),
        );
    }
  }
  return values;
}
