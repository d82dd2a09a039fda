/** The Python SDK's own tests (pytest, Debian's python3-pytest) as part of npm test, deprecations as errors. */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PYTHON } from './support/python.js';

const root = join(import.meta.dirname, '..');

describe('sdk/python', () => {
  it('passes its pytest suite', { timeout: 240_000 }, () => {
    // Deprecations are errors: numpy and protobuf warn before they remove (numpy 2, protobuf 5).
    const args = ['-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-W', 'error::DeprecationWarning'];
    const r = spawnSync(PYTHON, [...args, '-W', 'error::PendingDeprecationWarning', 'sdk/python/tests'], {
      cwd: root,
      encoding: 'utf8',
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' },
    });
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
  });
});
