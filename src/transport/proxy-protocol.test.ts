import { describe, expect, it } from 'vitest';
import { MAX_V2_BYTES, parseProxyHeader, startsProxyHeader, V2_SIGNATURE } from './proxy-protocol.js';

const TLS_HELLO = Buffer.from([0x16, 0x03, 0x01, 0x00, 0xc8]);

/** A version 2 header: command 1 (PROXY) or 0 (LOCAL), a family/transport byte, its body. */
function v2(command: number, familyProtocol: number, body: Buffer): Buffer {
  const fixed = Buffer.alloc(4);
  fixed[0] = 0x20 | command;
  fixed[1] = familyProtocol;
  fixed.writeUInt16BE(body.length, 2);
  return Buffer.concat([V2_SIGNATURE, fixed, body]);
}

function tcp4Body(): Buffer {
  const b = Buffer.alloc(12);
  Buffer.from([203, 0, 113, 7]).copy(b, 0);
  Buffer.from([10, 0, 0, 1]).copy(b, 4);
  b.writeUInt16BE(51234, 8);
  b.writeUInt16BE(9092, 10);
  return b;
}

function tcp6Body(): Buffer {
  const b = Buffer.alloc(36);
  Buffer.from('20010db8000000000000000000000001', 'hex').copy(b, 0);
  Buffer.from('00000000000000000000000000000001', 'hex').copy(b, 16);
  b.writeUInt16BE(40000, 32);
  b.writeUInt16BE(8443, 34);
  return b;
}

describe('parseProxyHeader', () => {
  it('reads a version 1 TCP4 header and says how many bytes it took', () => {
    const line = 'PROXY TCP4 192.0.2.10 10.0.0.1 56324 9092\r\n';
    const r = parseProxyHeader(Buffer.concat([Buffer.from(line), TLS_HELLO]));
    expect(r).toEqual({
      status: 'ok',
      length: line.length,
      header: {
        kind: 'proxied',
        version: 1,
        source: { address: '192.0.2.10', port: 56324, family: 'IPv4' },
        destination: { address: '10.0.0.1', port: 9092, family: 'IPv4' },
      },
    });
  });

  it('reads a version 1 TCP6 header', () => {
    const r = parseProxyHeader(Buffer.from('PROXY TCP6 2001:db8::7 ::1 1 8443\r\n'));
    expect(r.status === 'ok' && r.header).toMatchObject({
      kind: 'proxied',
      source: { address: '2001:db8::7', port: 1, family: 'IPv6' },
    });
  });

  it('treats version 1 UNKNOWN as the proxy’s own connection', () => {
    const r = parseProxyHeader(Buffer.from('PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n'));
    expect(r).toMatchObject({ status: 'ok', header: { kind: 'local', version: 1 } });
  });

  it('reads version 2 TCP4 and TCP6 headers, addresses spelled as Node spells them', () => {
    const four = parseProxyHeader(Buffer.concat([v2(1, 0x11, tcp4Body()), TLS_HELLO]));
    expect(four).toMatchObject({
      status: 'ok',
      length: 28,
      header: {
        kind: 'proxied',
        version: 2,
        source: { address: '203.0.113.7', port: 51234, family: 'IPv4' },
      },
    });
    const six = parseProxyHeader(v2(1, 0x21, tcp6Body()));
    expect(six).toMatchObject({
      status: 'ok',
      length: 52,
      header: {
        source: { address: '2001:db8::1', port: 40000, family: 'IPv6' },
        destination: { address: '::1', port: 8443 },
      },
    });
  });

  it('reads a version 2 LOCAL header (a health check of the proxy) and skips its TLVs', () => {
    const r = parseProxyHeader(
      v2(0, 0x11, Buffer.concat([tcp4Body(), Buffer.from([0x04, 0x00, 0x01, 0x00])])),
    );
    expect(r).toEqual({ status: 'ok', header: { kind: 'local', version: 2 }, length: 32 });
  });

  it('asks for more bytes until a header split across packets is complete', () => {
    for (const whole of [
      Buffer.from('PROXY TCP4 192.0.2.10 10.0.0.1 56324 9092\r\n'),
      v2(1, 0x11, tcp4Body()),
    ]) {
      for (let cut = 1; cut < whole.length; cut++)
        expect(parseProxyHeader(whole.subarray(0, cut))).toEqual({ status: 'incomplete' });
      expect(parseProxyHeader(whole).status).toBe('ok');
    }
  });

  it('refuses malformed headers with a reason', () => {
    const cases: [Buffer, RegExp][] = [
      [Buffer.from('PROXY TCP4 192.0.2.10 10.0.0.1 56324\r\n'), /malformed PROXY v1/],
      [Buffer.from('PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n'), /malformed PROXY v1/],
      [Buffer.from('PROXY TCP4 192.0.2.10 10.0.0.1 65536 2\r\n'), /malformed PROXY v1/],
      [Buffer.from('PROXY TCP4 192.0.2.10 10.0.0.1 007 2\r\n'), /malformed PROXY v1/],
      [Buffer.from('PROXY UDP4 192.0.2.10 10.0.0.1 1 2\r\n'), /malformed PROXY v1/],
      [Buffer.from(`PROXY TCP4 ${'1'.repeat(120)}`), /longer than 107 bytes/],
      [v2(1, 0x12, tcp4Body()), /transport 0x12 \(not TCP\)/],
      [v2(1, 0x11, Buffer.alloc(4)), /too short/],
      [v2(2, 0x11, tcp4Body()), /command 2/],
      [Buffer.concat([V2_SIGNATURE, Buffer.from([0x31, 0x11, 0x00, 0x0c]), tcp4Body()]), /version 3/],
      [TLS_HELLO, /does not start with a PROXY header/],
    ];
    for (const [bytes, reason] of cases) {
      const r = parseProxyHeader(bytes);
      expect(r.status, String(reason)).toBe('invalid');
      if (r.status === 'invalid') expect(r.reason).toMatch(reason);
    }
  });

  it('refuses an oversized version 2 header from its length field, before the bytes arrive', () => {
    const fixed = Buffer.from([0x21, 0x11, 0xff, 0xff]);
    const r = parseProxyHeader(Buffer.concat([V2_SIGNATURE, fixed]));
    expect(r).toEqual({
      status: 'invalid',
      reason: `PROXY v2 header of 65551 bytes (at most ${MAX_V2_BYTES})`,
    });
  });

  it('keeps control characters of a refused line out of the reason (no forged log lines)', () => {
    const r = parseProxyHeader(Buffer.from('PROXY TCP4 a\nb 1 2\r\n'));
    expect(r.status === 'invalid' && r.reason).toContain('"PROXY TCP4 a?b 1 2"');
  });
});

describe('startsProxyHeader', () => {
  it('tells a TLS ClientHello from a header by its first byte, and waits on an ambiguous prefix', () => {
    expect(startsProxyHeader(TLS_HELLO)).toBe('no');
    expect(startsProxyHeader(Buffer.from('PRI * HTTP/2.0'))).toBe('no');
    expect(startsProxyHeader(Buffer.from('PRO'))).toBe('maybe');
    expect(startsProxyHeader(Buffer.from('PROXY TCP4'))).toBe('yes');
    expect(startsProxyHeader(V2_SIGNATURE.subarray(0, 5))).toBe('maybe');
    expect(startsProxyHeader(V2_SIGNATURE)).toBe('yes');
  });
});
