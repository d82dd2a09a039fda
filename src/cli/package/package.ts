import { relative } from 'node:path';
import {
  configFileName,
  DEFAULT_BUILDERS,
  formatEndpoint,
  kitFolder,
  planKit,
  resolveKitSpec,
  signingBuilder,
  writeKit,
} from '../../enrollment/kit.js';
import { PollenError } from '../../errors.js';
import { type LoadedCa, loadCa } from '../../pki/ca.js';
import type { Output } from '../output.js';
import { tokenArgument } from './token-arg.js';

export interface PackageOptions {
  name?: string;
  endpoint?: string;
  type: string;
  output?: string;
  workspace?: string;
  org?: string;
  role?: string;
  certService?: string;
  token?: string;
  ca?: string;
  listeningHost?: string;
  listeningPort?: string;
  /** Servers and relays: DNS names and IP addresses it is reached at (the token must name each). */
  host?: string[];
  /** A pip requirements file the kit carries; start.sh checks the Python environment against it. */
  requirements?: string;
  force?: boolean;
}

/** `pollen package`: write a startup kit, signed when a CA folder is at hand. */
export async function packageKit(o: PackageOptions, out: Output): Promise<void> {
  if (!o.name) throw new PollenError('USAGE', 'Missing -n/--name');
  if (!o.endpoint) throw new PollenError('USAGE', 'Missing -e/--endpoint');
  let ca: LoadedCa | null = null;
  if (o.ca) ca = await loadCa(o.ca);
  const { spec, warnings } = resolveKitSpec({
    name: o.name,
    type: o.type,
    endpoint: o.endpoint,
    ...(o.org !== undefined && { org: o.org }),
    ...(o.role !== undefined && { role: o.role }),
    ...(o.certService !== undefined && { certServiceUrl: o.certService }),
    ...(o.token !== undefined && { token: tokenArgument(o.token) }),
    ...(o.listeningHost !== undefined && { listeningHost: o.listeningHost }),
    ...(o.listeningPort !== undefined && { listeningPort: o.listeningPort }),
    ...(o.host !== undefined && { hosts: o.host }),
    ...(ca && { caRootFingerprint: ca.rootFingerprint }),
    ...(o.requirements !== undefined && { requirements: await requirementsOf(o.requirements) }),
  });
  const dir = kitFolder(spec.name, {
    ...(o.output !== undefined && { output: o.output }),
    ...(o.workspace !== undefined && { workspace: o.workspace }),
  });
  const plan = await planKit(spec, [...DEFAULT_BUILDERS, signingBuilder(ca)]);
  writeKit(dir, plan, { force: Boolean(o.force) });
  for (const w of [...warnings, ...plan.warnings]) out.warn(w);
  const files = plan.files.map((f) => ({
    path: f.path,
    mode: `0${(f.mode & 0o777).toString(8)}`,
    size: f.content.length,
    ...(f.secret && { secret: true }),
  }));
  const result = {
    kit: dir,
    name: spec.name,
    type: spec.type,
    org: spec.org,
    role: spec.role,
    endpoint: formatEndpoint(spec.endpoint),
    hosts: spec.hosts,
    config: `startup/${configFileName(spec.type)}`,
    signed: ca !== null,
    signer: ca ? ca.intermediate.subject : null,
    rootCaFingerprint: ca?.rootFingerprint ?? spec.enrollment?.rootCaFingerprint ?? null,
    enrollment: spec.enrollment
      ? { certServiceUrl: spec.enrollment.certServiceUrl, token: spec.token !== null }
      : spec.token !== null
        ? { certServiceUrl: null, token: true }
        : null,
    files,
    warnings: [...warnings, ...plan.warnings],
  };
  out.result(result, (r) => [
    `Startup kit for ${r.type} "${r.name}" written to ${r.kit}${r.signed ? ` (signed by ${r.signer})` : ' (unsigned)'}`,
    ...r.files.map((f) => `  ${f.mode}  ${f.path}`),
    ...(r.rootCaFingerprint
      ? [`Root CA: ${r.rootCaFingerprint} (give it to the site out of band to pin)`]
      : []),
    `Next: read ${relative(process.cwd(), `${r.kit}/readme.txt`) || 'readme.txt'}, then ./startup/start.sh in the kit folder.`,
  ]);
}

/** The requirements file's lines (loaded here: only kits that carry one read pyproject parsers). */
async function requirementsOf(file: string): Promise<string[]> {
  const { readRequirementsFile } = await import('../../apps/build-python.js');
  return readRequirementsFile(file);
}
