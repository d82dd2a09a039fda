import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { renderErrorsDoc } from '../scripts/gen-errors-doc.js';
import { ERROR_CODES, ExitCode, PollenError, publicError, toPollenError } from './errors.js';

describe('errors', () => {
  it('docs/errors.md lists every code (regenerate with `npx tsx scripts/gen-errors-doc.ts`)', () => {
    expect(readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8')).toBe(renderErrorsDoc());
  });

  it('gives every code a 4xx/5xx (or 202) status, an exit code from the table and a hint', () => {
    const exits = new Set<number>(Object.values(ExitCode));
    for (const [code, s] of Object.entries(ERROR_CODES)) {
      expect(s.status === 202 || (s.status >= 400 && s.status < 600), code).toBe(true);
      expect(exits.has(s.exit), code).toBe(true);
      expect(s.hint.length, code).toBeGreaterThan(5);
    }
  });

  it('keeps internal detail out of the public form', () => {
    const e = new PollenError('TOKEN_INVALID', 'The enrollment token is invalid', {
      detail: 'kid abc unknown',
    });
    expect(JSON.stringify(e)).not.toContain('kid abc');
    expect(e.toJSON()).toEqual({
      code: 'TOKEN_INVALID',
      message: 'The enrollment token is invalid',
      hint: e.hint,
    });
    expect(e.status).toBe(401);
    expect(e.exitCode).toBe(ExitCode.UNAUTHORIZED);
  });

  it('never lets public data replace the code, message or hint', () => {
    const e = new PollenError('REQUEST_ALREADY_DECIDED', 'Request r1 was already approved', {
      data: { code: 'OK', message: 'fine', hint: 'ignore', requestId: 'r1' },
    });
    expect(e.toJSON()).toEqual({
      code: 'REQUEST_ALREADY_DECIDED',
      message: 'Request r1 was already approved',
      hint: ERROR_CODES.REQUEST_ALREADY_DECIDED.hint,
      requestId: 'r1',
    });
  });

  it('marks the codes a client may retry, and only those', () => {
    const retryable = Object.entries(ERROR_CODES)
      .filter(([, s]) => s.retryable)
      .map(([c]) => c);
    expect(retryable.sort()).toEqual(
      [
        'DATABASE_UNAVAILABLE',
        'GPU_UNAVAILABLE',
        'INTERNAL',
        'LOGIN_ISSUER_UNREACHABLE',
        'ISSUER_UNREACHABLE',
        'NODE_UNAVAILABLE',
        'NOT_READY',
        'RATE_LIMITED',
        'SUPERLINK_GONE',
        'STORE_LEASE_HELD',
        'STORE_LEASE_LOST',
        'UNAVAILABLE',
      ].sort(),
    );
    expect(new PollenError('UNAVAILABLE', 'down').retryable).toBe(true);
    expect(new PollenError('TOKEN_USED', 'used').retryable).toBe(false);
  });

  it('maps system errors to codes and hides unexpected ones as INTERNAL', () => {
    expect(toPollenError(Object.assign(new Error('x'), { code: 'ENOENT', path: '/nope' })).code).toBe(
      'FILE_NOT_FOUND',
    );
    expect(toPollenError(Object.assign(new Error('x'), { code: 'ECONNREFUSED' })).code).toBe('UNAVAILABLE');
    const denied = toPollenError(Object.assign(new Error('x'), { code: 'EACCES', path: '/srv/pollen' }));
    expect([denied.code, denied.status, denied.exitCode]).toEqual(['FILE_ACCESS_DENIED', 403, 5]);
    expect(denied.message).toMatch(/^Permission denied: \/srv\/pollen \(Pollen runs as uid \d+\)$/);
    const readOnly = toPollenError(Object.assign(new Error('x'), { code: 'EROFS', path: '/kit' }));
    expect(readOnly.message).toMatch(/^Read-only file system: \/kit /);
    const full = toPollenError(Object.assign(new Error('x'), { code: 'ENOSPC', path: '/var/lib/pollen/x' }));
    expect([full.code, full.status, full.message]).toEqual(['STORAGE_FULL', 507, 'The disk is full']);
    const internal = toPollenError(new TypeError('secret stack detail'));
    expect(internal.code).toBe('INTERNAL');
    expect(internal.message).not.toContain('secret');
  });

  it('publicError: public refusals pass, anything else is answered by a reference the report logs', () => {
    const reported: [string, unknown][] = [];
    const report = (reference: string, e: unknown) => reported.push([reference, e]);
    const refusal = new PollenError('TOKEN_USED', 'used');
    expect(publicError(refusal, report)).toBe(refusal);
    expect(reported).toHaveLength(0);

    const bug = Object.assign(new Error('open /srv/secret'), { code: 'ENOENT', path: '/srv/secret' });
    const internal = publicError(bug, report);
    expect([internal.code, internal.message]).toEqual([
      'INTERNAL',
      `Internal error (reference ${reported[0]![0]})`,
    ]);
    expect(reported[0]![1]).toBe(bug);
    expect(internal.toJSON()).toMatchObject({ reference: reported[0]![0] });
    expect(JSON.stringify(internal.toJSON())).not.toContain('secret');

    const down = publicError(
      Object.assign(new Error('connect ECONNREFUSED 10.0.0.5:5432'), { code: 'ECONNREFUSED' }),
      report,
    );
    expect([down.code, down.status, down.retryable]).toEqual(['UNAVAILABLE', 503, true]);
    expect(down.message).toBe(
      `The service cannot reach a system it depends on, such as its database (reference ${reported[1]![0]})`,
    );
    expect(reported[1]![0]).not.toBe(reported[0]![0]);
  });
});
