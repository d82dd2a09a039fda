import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { type ErrorCode, PollenError } from '../errors.js';
import {
  ERROR_CODE_HEADER,
  errorCodeOf,
  fromConnectError,
  publicConnectError,
  RETRY_AFTER_HEADER,
  toConnectError,
} from './errors.js';

const ignore = () => {};

describe('toConnectError', () => {
  const cases: [ErrorCode, Code][] = [
    ['INVALID_ARGUMENT', Code.InvalidArgument],
    ['RECORD_INVALID', Code.InvalidArgument],
    ['CHUNK_MISMATCH', Code.InvalidArgument],
    ['TOKEN_INVALID', Code.Unauthenticated],
    ['FORBIDDEN', Code.PermissionDenied],
    ['CHUNK_MISSING', Code.NotFound],
    ['FILE_EXISTS', Code.AlreadyExists],
    ['TOKEN_USED', Code.FailedPrecondition],
    ['CHUNK_TOO_LARGE', Code.ResourceExhausted],
    ['PAYLOAD_TOO_LARGE', Code.ResourceExhausted],
    ['RATE_LIMITED', Code.ResourceExhausted],
    ['CHUNK_QUOTA_EXCEEDED', Code.ResourceExhausted],
    ['REPLY_QUEUE_FULL', Code.ResourceExhausted],
    ['STORAGE_FULL', Code.ResourceExhausted],
    ['CHUNK_RUN_REQUIRED', Code.InvalidArgument],
    ['UNAVAILABLE', Code.Unavailable],
    ['INTERNAL', Code.Internal],
  ];
  for (const [code, expected] of cases)
    it(`${code} → ${Code[expected]}`, () => {
      const ce = publicConnectError(toConnectError(new PollenError(code, 'what happened')), ignore);
      if (code === 'INTERNAL') {
        // an INTERNAL is never sent as made: it is replaced by a bare one with a reference
        expect(ce.code).toBe(expected);
        expect(ce.metadata.get(ERROR_CODE_HEADER)).toBe(code);
        expect(ce.rawMessage).toMatch(/^INTERNAL: Internal error \(reference [0-9a-f]{10}\)$/);
        return;
      }
      expect(ce.code).toBe(expected);
      expect(ce.metadata.get(ERROR_CODE_HEADER)).toBe(code);
      expect(ce.rawMessage).toBe(`${code}: what happened`);
    });

  it('sends the wait a refusal asks for (data.retryAfterMs) in its own header, read back into data', () => {
    const told = new PollenError('RATE_LIMITED', 'too fast', { data: { retryAfterMs: 1234.2, burst: 3 } });
    const ce = publicConnectError(toConnectError(told), ignore);
    expect(ce.metadata.get(RETRY_AFTER_HEADER)).toBe('1235');
    expect(fromConnectError(ce)).toMatchObject({ code: 'RATE_LIMITED', data: { retryAfterMs: 1235 } });
    // Nothing asked, or nothing usable: no header, no data.
    for (const data of [
      undefined,
      { retryAfterMs: -1 },
      { retryAfterMs: Number.NaN },
      { retryAfterMs: '5' },
    ]) {
      const plain = publicConnectError(
        toConnectError(new PollenError('RATE_LIMITED', 'x', { data })),
        ignore,
      );
      expect(plain.metadata.get(RETRY_AFTER_HEADER)).toBeNull();
      expect(fromConnectError(plain).data).toBeUndefined();
    }
    // A header that is not a whole number of milliseconds is ignored.
    for (const bad of ['-5', '1e3', 'soon', '12345678901']) {
      const forged = new ConnectError('RATE_LIMITED: x', Code.ResourceExhausted, {
        [ERROR_CODE_HEADER]: 'RATE_LIMITED',
        [RETRY_AFTER_HEADER]: bad,
      });
      expect(fromConnectError(forged).data).toBeUndefined();
    }
  });

  it('hides the detail of unexpected errors behind a reference the server logs, and passes ConnectErrors through', () => {
    const reported: [string, unknown][] = [];
    const boom = Object.assign(new Error('secret path /etc/shadow'), { code: 'ENOENT', path: '/etc/shadow' });
    const ce = publicConnectError(toConnectError(boom), (ref, e) => reported.push([ref, e]));
    expect(ce.code).toBe(Code.Internal);
    expect(ce.rawMessage).not.toContain('secret');
    expect(ce.rawMessage).not.toContain('/etc');
    expect(ce.metadata.get(ERROR_CODE_HEADER)).toBe('INTERNAL');
    expect(reported).toHaveLength(1);
    expect(reported[0]![1]).toBe(boom);
    expect(ce.rawMessage).toContain(`reference ${reported[0]![0]}`);
    const mine = new ConnectError('x', Code.Aborted);
    expect(toConnectError(mine)).toBe(mine);
    expect(publicConnectError(mine, ignore)).toBe(mine);
    expect(
      publicConnectError(new PollenError('CHUNK_MISSING', 'm', { detail: 'secret' }), ignore).message,
    ).not.toContain('secret');
  });
});

describe('fromConnectError', () => {
  it('keeps the Pollen code and message', () => {
    const back = fromConnectError(toConnectError(new PollenError('CHUNK_MISMATCH', 'bad bytes')));
    expect(back).toBeInstanceOf(PollenError);
    expect(back.code).toBe('CHUNK_MISMATCH');
    expect(back.message).toBe('bad bytes');
  });

  it('maps other failures to the closest code, and refuses unknown header values', () => {
    expect(fromConnectError(new ConnectError('down', Code.Unavailable)).code).toBe('UNAVAILABLE');
    expect(fromConnectError(new ConnectError('no', Code.PermissionDenied)).code).toBe('FORBIDDEN');
    expect(fromConnectError(new ConnectError('?', Code.DataLoss)).code).toBe('INTERNAL');
    expect(fromConnectError(new Error('plain')).code).toBe('INTERNAL');
    const forged = new ConnectError('x', Code.InvalidArgument, { [ERROR_CODE_HEADER]: 'toString' });
    expect(fromConnectError(forged).code).toBe('INVALID_REQUEST');
    const pe = new PollenError('USAGE', 'u');
    expect(fromConnectError(pe)).toBe(pe);
  });

  it('errorCodeOf gives the stable code of anything', () => {
    expect(errorCodeOf(new PollenError('CHUNK_MISSING', 'm'))).toBe('CHUNK_MISSING');
    expect(errorCodeOf(toConnectError(new PollenError('FORBIDDEN', 'm')))).toBe('FORBIDDEN');
    expect(errorCodeOf(new Error('x'))).toBe('INTERNAL');
    expect(errorCodeOf(Object.assign(new Error('x'), { code: 'ENOENT' }))).toBe('FILE_NOT_FOUND');
  });
});
