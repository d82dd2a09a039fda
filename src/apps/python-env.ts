/**
 * The site's Python environment: which interpreter runs Python apps, whether it has what an app
 * requires, and the environment an app process gets.
 *
 * Requirements are checked from installed distribution metadata (`importlib.metadata`), never by
 * importing the package: importing torch costs seconds and runs code. Versions compare by PEP 440
 * through `packaging` when the interpreter has it (Debian's python3-packaging), else by a small
 * comparator of release numbers. Nothing is ever installed.
 */
import { spawn } from 'node:child_process';
import { PollenError } from '../errors.js';
import { packageFile } from '../util/package-root.js';
import { appEnvironment } from './app-env.js';

/** The interpreter a site uses when given none: POLLEN_PYTHON, else `python3` on PATH. */
export function defaultPython(env: NodeJS.ProcessEnv = process.env): string {
  return env.POLLEN_PYTHON || 'python3';
}

/** The Python SDK of this Pollen (`sdk/python` at the package root, beside src/ and dist/). */
export function pythonSdkDir(): string {
  return packageFile('sdk', 'python');
}

export interface RequirementResult {
  /** As the app declares it, e.g. `numpy>=1.24`. */
  requirement: string;
  /** The distribution name, normalised (PEP 503). */
  name: string;
  /** The installed version; null when not installed. */
  found: string | null;
  ok: boolean;
  /** Why not ok (or why not checked: a marker that does not apply to this interpreter). */
  note?: string;
}

export interface EnvironmentCheck {
  /** The interpreter as given, and the one that ran (sys.executable). */
  python: string;
  executable: string;
  pythonVersion: string;
  ok: boolean;
  results: RequirementResult[];
}

/**
 * Reads requirements (JSON on stdin), prints one JSON answer. PEP 508 through `packaging` when
 * importable; otherwise a name, optional extras, comma-separated `OP VERSION` clauses and an
 * ignored marker, compared on release numbers (`1.13.1+cpu` → 1.13.1).
 */
const CHECK_SCRIPT = String.raw`
import json, re, sys
from importlib import metadata
try:
    from packaging.requirements import Requirement
    from packaging.version import Version
except Exception:
    Requirement = None

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

def release(v):
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", v)
    return tuple(int(x) for x in m.group(1).split(".")) if m else ()

def pad(a, b):
    n = max(len(a), len(b))
    return a + (0,) * (n - len(a)), b + (0,) * (n - len(b))

def clause_ok(found, op, want):
    if want.endswith(".*") and op in ("==", "!="):
        prefix = release(want[:-2])
        same = release(found)[: len(prefix)] == prefix
        return same if op == "==" else not same
    a, b = pad(release(found), release(want))
    if op == "~=":
        upper = release(want)[:-1]
        return a >= b and release(found)[: len(upper)] == upper
    return {"==": a == b, "===": found == want, "!=": a != b, ">=": a >= b, "<=": a <= b, ">": a > b, "<": a < b}[op]

def simple(text):
    spec = text.split(";", 1)[0].strip()
    m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*\(?([^)]*)\)?\s*$", spec)
    if not m:
        raise ValueError("not a requirement")
    clauses = []
    for c in filter(None, (s.strip() for s in m.group(3).split(","))):
        cm = re.match(r"(===|==|!=|~=|>=|<=|>|<)\s*(\S+)$", c)
        if not cm:
            raise ValueError("cannot read " + c)
        clauses.append(cm.groups())
    return m.group(1), clauses, ";" in text

def check(text):
    out = {"requirement": text, "name": text, "found": None, "ok": False}
    try:
        if Requirement is not None:
            req = Requirement(text)
            name = req.name
            if req.marker is not None and not req.marker.evaluate():
                out.update(name=norm(name), ok=True, note="not needed on this interpreter (" + str(req.marker) + ")")
                return out
        else:
            name, clauses, marker = simple(text)
        out["name"] = norm(name)
        try:
            found = metadata.version(name)
        except metadata.PackageNotFoundError:
            out["note"] = "not installed"
            return out
        out["found"] = found
        if Requirement is not None:
            out["ok"] = req.specifier.contains(Version(found), prereleases=True)
        else:
            out["ok"] = all(clause_ok(found, op, want) for op, want in clauses)
            if marker:
                out["note"] = "environment marker not evaluated (no packaging module)"
        if not out["ok"]:
            out["note"] = "version " + found + " does not satisfy " + text
    except Exception as e:
        out["note"] = "cannot check: " + str(e)
    return out

reqs = json.load(sys.stdin)
results = [check(r) for r in reqs]
print(json.dumps({"executable": sys.executable, "pythonVersion": ".".join(map(str, sys.version_info[:3])), "results": results}))
`;

/** What Pollen's Python SDK itself imports: an interpreter without them runs no Python app at all. */
export const SDK_REQUIREMENTS: readonly string[] = ['numpy', 'grpcio', 'protobuf'];

/** The distribution an app's requirement names, normalised (PEP 503). */
function distribution(requirement: string): string {
  const name = /^\s*([A-Za-z0-9][A-Za-z0-9._-]*)/.exec(requirement)?.[1] ?? requirement;
  return name.replace(/[-_.]+/g, '-').toLowerCase();
}

/** The app's requirements and the SDK's own, each distribution once (the app's clause wins). */
export function withSdkRequirements(requirements: readonly string[]): string[] {
  const named = new Set(requirements.map(distribution));
  return [...requirements, ...SDK_REQUIREMENTS.filter((r) => !named.has(r))];
}

function notRunnable(python: string, why: string): PollenError {
  return new PollenError('PYTHON_NOT_FOUND', `The Python interpreter ${python} cannot run: ${why}`);
}

/**
 * Run the check script with `python` on the app's requirements and the SDK's own (an interpreter
 * without grpcio would take the run and crash); PYTHON_NOT_FOUND when it does not run or answers
 * nonsense.
 */
export function checkEnvironment(python: string, requirements: readonly string[]): Promise<EnvironmentCheck> {
  return new Promise((resolve, reject) => {
    // The environment an app gets, so the check sees the packages the app will see.
    const child = spawn(python, ['-c', CHECK_SCRIPT], {
      env: appEnvironment({ PYTHONDONTWRITEBYTECODE: '1' }),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('error', (e) => reject(notRunnable(python, e.message)));
    child.stdin.on('error', () => {}); // an interpreter that exits at once closes its stdin
    child.stdin.end(JSON.stringify(withSdkRequirements(requirements)));
    child.on('close', (code) => {
      try {
        if (code !== 0) throw new Error(`exit code ${code}`);
        const answer = JSON.parse(stdout) as Omit<EnvironmentCheck, 'python' | 'ok'>;
        resolve({ python, ...answer, ok: answer.results.every((r) => r.ok) });
      } catch (e) {
        const last = stderr.trim().split('\n').pop();
        reject(notRunnable(python, last || (e as Error).message));
      }
    });
  });
}

/** APP_REQUIREMENTS_MISSING naming each missing or too old distribution and the interpreter. */
export function requirementsMissing(check: EnvironmentCheck, app: string): PollenError {
  const missing = check.results
    .filter((r) => !r.ok)
    .map((r) => `${r.requirement} (${r.found === null ? 'not installed' : `found ${r.found}`})`);
  return new PollenError(
    'APP_REQUIREMENTS_MISSING',
    `App ${app} requires ${missing.join(', ')} in ${check.executable} (Python ${check.pythonVersion})`,
  );
}

/**
 * Checks for a node's life: a satisfied (interpreter, requirements) pair is remembered; a refusal
 * is asked again next time, so an operator who installs what was missing needs no restart.
 */
export class RequirementChecks {
  readonly #satisfied = new Set<string>();

  constructor(readonly python: string) {}

  /** Resolves when the interpreter has every requirement; else APP_REQUIREMENTS_MISSING. */
  async require(requirements: readonly string[], app: string): Promise<void> {
    const key = JSON.stringify(requirements);
    if (this.#satisfied.has(key)) return;
    const check = await checkEnvironment(this.python, requirements);
    if (!check.ok) throw requirementsMissing(check, app);
    this.#satisfied.add(key);
  }
}

export interface PythonAppEnv {
  appIoUrl: string;
  runId: string;
  token: string;
  /** `module.path:attr` of the component to run. */
  ref: string;
  /** The unpacked bundle (the process's working folder, on its path). */
  bundleDir: string;
}

/**
 * glibc's allocator in an app process: blocks up to 4 GiB (the largest array a message carries)
 * come from the heap, and up to 8 GiB (the most a message carries) stay there when freed. By
 * default every large block is a fresh mapping, so each round's model arrays and 4 MiB chunk
 * buffers fault in new pages from the kernel (most of an app's CPU per round); kept, the next
 * round reuses them. The process keeps its peak memory between rounds, which it needs again.
 */
export const APP_MALLOC_VARIABLES: Readonly<Record<string, string>> = {
  MALLOC_MMAP_THRESHOLD_: String(4 * 1024 ** 3),
  MALLOC_TRIM_THRESHOLD_: String(8 * 1024 ** 3),
};

/** The variables a Python app process gets beside the minimal environment (apps/app-env.ts). */
export function pythonAppVariables(o: PythonAppEnv): Record<string, string> {
  return {
    ...APP_MALLOC_VARIABLES,
    POLLEN_APPIO_URL: o.appIoUrl,
    POLLEN_RUN_ID: o.runId,
    POLLEN_APP_TOKEN: o.token,
    POLLEN_APP_REF: o.ref,
    PYTHONPATH: `${pythonSdkDir()}:${o.bundleDir}`,
    PYTHONUNBUFFERED: '1',
    PYTHONDONTWRITEBYTECODE: '1',
  };
}

/** `PYTHON -m pollen._runner clientapp|serverapp`. */
export function pythonRunnerArgs(kind: 'clientapp' | 'serverapp'): string[] {
  return ['-m', 'pollen._runner', kind];
}
