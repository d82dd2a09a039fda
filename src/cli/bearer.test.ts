import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from '../../test/support/cli.js';
import { bearerFromEnv } from './bearer.js';

const t = tempDir('pollen-bearer-');
afterAll(() => t.cleanup());
const SECRET = `pollen_sa_${'A'.repeat(43)}`;

describe('bearerFromEnv', () => {
  it('reads POLLEN_TOKEN, or a file (--token-file over POLLEN_TOKEN_FILE over POLLEN_TOKEN); none: undefined', () => {
    const file = join(t.dir, 'token');
    writeFileSync(file, `${SECRET}\n`);
    chmodSync(file, 0o600);
    expect(bearerFromEnv({}, {})).toBeUndefined();
    expect(bearerFromEnv({}, { POLLEN_TOKEN: '' })).toBeUndefined();
    expect(bearerFromEnv({}, { POLLEN_TOKEN: SECRET })).toBe(SECRET);
    expect(bearerFromEnv({}, { POLLEN_TOKEN: 'other', POLLEN_TOKEN_FILE: file })).toBe(SECRET);
    expect(bearerFromEnv({ tokenFile: file }, { POLLEN_TOKEN: 'other', POLLEN_TOKEN_FILE: '/nope' })).toBe(
      SECRET,
    );
  });

  it('refuses an unreadable file (FILE_NOT_FOUND) and what is not one token (INVALID_ARGUMENT)', () => {
    expect(() => bearerFromEnv({ tokenFile: join(t.dir, 'missing') }, {})).toThrow(
      expect.objectContaining({ code: 'FILE_NOT_FOUND', message: expect.stringContaining('missing') }),
    );
    const empty = join(t.dir, 'empty');
    writeFileSync(empty, '\n');
    for (const [o, env] of [
      [{ tokenFile: empty }, {}],
      [{}, { POLLEN_TOKEN: 'two words' }],
      [{}, { POLLEN_TOKEN: 'a,b' }],
      [{}, { POLLEN_TOKEN: '  ' }],
    ] as const)
      expect(() => bearerFromEnv(o, env)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});
