import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { type ErrorCode, PollenError } from '../errors.js';
import { ERROR_CODE_HEADER, errorCodeOf, fromConnectError, toConnectError } from './errors.js';

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
      const ce = toConnectError(new PollenError(code, 'what happened'));
      expect(ce.code).toBe(expected);
      expect(ce.metadata.get(ERROR_CODE_HEADER)).toBe(code);
      expect(ce.rawMessage).toBe(`${code}: what happened`);
    });

  it('hides the detail of unexpected errors and passes ConnectErrors through', () => {
    const ce = toConnectError(new Error('secret path /etc/shadow'));
    expect(ce.code).toBe(Code.Internal);
    expect(ce.rawMessage).not.toContain('secret');
    expect(ce.metadata.get(ERROR_CODE_HEADER)).toBe('INTERNAL');
    const mine = new ConnectError('x', Code.Aborted);
    expect(toConnectError(mine)).toBe(mine);
    expect(toConnectError(new PollenError('CHUNK_MISSING', 'm', { detail: 'secret' })).message).not.toContain(
      'secret',
    );
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
