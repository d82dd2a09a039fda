import { describe, expect, it } from 'vitest';
import { pollenErrorOf } from '../../test/support/errors.js';
import { PYTHON } from '../../test/support/python.js';
import { choosePython, pythonCandidates } from './python-choice.js';

const MISSING = '/nonexistent/bin/python3';

describe('pythonCandidates', () => {
  it('tries --python, POLLEN_PYTHON, python3 on the PATH, then Debian’s, each once', () => {
    expect(pythonCandidates('/venv/bin/python', { POLLEN_PYTHON: '/opt/py' })).toEqual([
      { python: '/venv/bin/python', from: '--python' },
      { python: '/opt/py', from: 'POLLEN_PYTHON' },
      { python: 'python3', from: 'PATH' },
      { python: '/usr/bin/python3', from: 'Debian' },
    ]);
    expect(pythonCandidates(undefined, { POLLEN_PYTHON: '/usr/bin/python3' })).toEqual([
      { python: '/usr/bin/python3', from: 'POLLEN_PYTHON' },
      { python: 'python3', from: 'PATH' },
    ]);
  });
});

describe('choosePython', () => {
  it('passes over an interpreter that does not run and takes the next that has the requirements', async () => {
    const c = await choosePython('demo-app', ['numpy>=1.0'], undefined, { POLLEN_PYTHON: MISSING });
    expect(c.from).not.toBe('POLLEN_PYTHON');
    expect(c.check.ok).toBe(true);
    expect(c.passedOver[0]).toEqual({ python: MISSING, from: 'POLLEN_PYTHON', why: 'does not run' });
  });

  it('takes --python alone when given, and names what it lacks', async () => {
    expect((await choosePython('demo-app', ['numpy'], PYTHON)).from).toBe('--python');
    const e = await pollenErrorOf(choosePython('demo-app', ['numpy', 'no-such-dist>=1'], PYTHON));
    expect(e.code).toBe('APP_REQUIREMENTS_MISSING');
    expect(e.message).toContain(`${PYTHON} (--python) lacks no-such-dist>=1 (not installed)`);
    expect(e.message).not.toContain('numpy (');
    expect(e.hint).toContain('--python PATH');
  });

  it('says no interpreter runs when none does', async () => {
    const e = await pollenErrorOf(choosePython('demo-app', ['numpy'], MISSING));
    expect(e).toMatchObject({ code: 'PYTHON_NOT_FOUND', message: expect.stringContaining('does not run') });
  });
});
