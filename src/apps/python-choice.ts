/**
 * The interpreter a command on this machine runs a Python app with, when the operator names none
 * for sure: the first of `--python`, POLLEN_PYTHON, `python3` on the PATH and Debian's
 * `/usr/bin/python3` that runs and has every requirement of the app. A SuperNode never guesses
 * (it takes --python or its default and refuses a run it cannot serve); `pollen demo` and
 * `pollen simulate` look further, and say which one they took.
 */
import { PollenError } from '../errors.js';
import { checkEnvironment, type EnvironmentCheck } from './python-env.js';

/** Where each candidate comes from, for the message that names it. */
export interface PythonCandidate {
  python: string;
  from: '--python' | 'POLLEN_PYTHON' | 'PATH' | 'Debian';
}

/** The candidates in order, each interpreter once. */
export function pythonCandidates(
  given: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): PythonCandidate[] {
  const all: (PythonCandidate | null)[] = [
    given ? { python: given, from: '--python' } : null,
    env.POLLEN_PYTHON ? { python: env.POLLEN_PYTHON, from: 'POLLEN_PYTHON' } : null,
    { python: 'python3', from: 'PATH' },
    { python: '/usr/bin/python3', from: 'Debian' },
  ];
  const seen = new Set<string>();
  return all.filter((c): c is PythonCandidate => c !== null && !seen.has(c.python) && !!seen.add(c.python));
}

export interface PythonChoice extends PythonCandidate {
  check: EnvironmentCheck;
  /** Why each candidate before it was passed over. */
  passedOver: { python: string; from: PythonCandidate['from']; why: string }[];
}

function shortfall(check: EnvironmentCheck): string {
  return check.results
    .filter((r) => !r.ok)
    .map((r) => `${r.requirement} (${r.found === null ? 'not installed' : `found ${r.found}`})`)
    .join(', ');
}

/**
 * The first candidate whose environment satisfies `requirements`. With `--python` given, only
 * that one: an operator who names an interpreter means it. APP_REQUIREMENTS_MISSING (or
 * PYTHON_NOT_FOUND when none runs) names every candidate and what it lacks.
 */
export async function choosePython(
  app: string,
  requirements: readonly string[],
  given: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Promise<PythonChoice> {
  const candidates = given
    ? [{ python: given, from: '--python' as const }]
    : pythonCandidates(undefined, env);
  const passedOver: PythonChoice['passedOver'] = [];
  for (const c of candidates) {
    try {
      const check = await checkEnvironment(c.python, requirements);
      if (check.ok) return { ...c, check, passedOver };
      passedOver.push({ ...c, why: `lacks ${shortfall(check)}` });
    } catch (e) {
      if (!(e instanceof PollenError) || e.code !== 'PYTHON_NOT_FOUND') throw e;
      passedOver.push({ ...c, why: 'does not run' });
    }
  }
  const tried = passedOver.map((p) => `${p.python} (${p.from}) ${p.why}`).join('; ');
  const anyRuns = passedOver.some((p) => p.why !== 'does not run');
  throw new PollenError(
    anyRuns ? 'APP_REQUIREMENTS_MISSING' : 'PYTHON_NOT_FOUND',
    `No Python interpreter here has what ${app} requires (${requirements.join(', ')}): ${tried}`,
    {
      hint: `Give an interpreter that has them with --python PATH (e.g. a virtual environment's bin/python; docs/python-operators.md shows how to make one), and check it with \`pollen env check APP_DIR --python PATH\`.`,
    },
  );
}
