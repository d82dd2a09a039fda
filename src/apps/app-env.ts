/**
 * The environment of an app process (ServerApp, ClientApp). Apps are code from the run's
 * submitter, so they do not inherit the SuperLink's or SuperNode's environment, where API keys,
 * database URLs and enrollment secrets live: only what a Node program needs to run, the
 * variables the operator lists in POLLEN_APP_ENV (comma-separated names, e.g.
 * `CUDA_VISIBLE_DEVICES,HF_HOME`), and what the runner itself is given.
 */
const BASE = [
  'PATH',
  'HOME',
  'LANG',
  'LC_ALL',
  'LC_CTYPE',
  'TZ',
  'TMPDIR',
  'TEMP',
  'TMP',
  'NODE_OPTIONS',
  'SYSTEMROOT',
];

/** Variables Pollen sets for an app process (beside the runner's own), for the manuals. */
export const APP_RESOURCE_VARIABLES = [
  'POLLEN_GPUS',
  'CUDA_VISIBLE_DEVICES',
  'POLLEN_CPUS',
  'OMP_NUM_THREADS',
] as const;

export function appEnvironment(
  extra: Record<string, string>,
  from: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  const listed = (from.POLLEN_APP_ENV ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(s));
  const env: Record<string, string> = {};
  for (const name of [...BASE, ...listed]) {
    const v = from[name];
    if (v !== undefined) env[name] = v;
  }
  return { ...env, ...extra };
}

/** The variables an app process gets for its resources (empty GPU list: every GPU hidden). */
export function resourceVariables(cpu: number | undefined, gpus: readonly number[]): Record<string, string> {
  const ids = gpus.join(',');
  return {
    POLLEN_GPUS: ids,
    CUDA_VISIBLE_DEVICES: ids,
    ...(cpu !== undefined && { POLLEN_CPUS: String(cpu), OMP_NUM_THREADS: String(cpu) }),
  };
}
