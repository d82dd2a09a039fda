/**
 * A small Dockerfile linter for deploy/docker (no Docker engine or hadolint on these machines):
 * it parses the instructions as BuildKit does (continuation lines, comments, exec-form JSON) and
 * checks the rules our images keep. Each rule names the hadolint rule it stands for, if any.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

const KEYWORDS = new Set(
  'FROM RUN CMD LABEL EXPOSE ENV ADD COPY ENTRYPOINT VOLUME USER WORKDIR ARG ONBUILD STOPSIGNAL HEALTHCHECK SHELL'.split(
    ' ',
  ),
);

/** The instructions of a Dockerfile, continuation lines joined, comments left out. */
export function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending: { text: string; line: number } | undefined;
  text.split('\n').forEach((raw, i) => {
    const trimmed = raw.trim();
    if (trimmed.startsWith('#') || (trimmed === '' && pending === undefined)) return;
    const continued = trimmed.endsWith('\\');
    const body = continued ? trimmed.slice(0, -1) : trimmed;
    pending =
      pending === undefined ? { text: body, line: i + 1 } : { ...pending, text: `${pending.text} ${body}` };
    if (continued) return;
    const m = /^(\S+)\s*(.*)$/.exec(pending.text)!;
    out.push({ keyword: m[1]!.toUpperCase(), args: m[2]!.trim(), line: pending.line });
    pending = undefined;
  });
  if (pending !== undefined) out.push({ keyword: '', args: pending.text, line: pending.line });
  return out;
}

/** The words of an exec-form (JSON array) argument, or undefined for the shell form. */
export function execForm(args: string): string[] | undefined {
  if (!args.startsWith('[')) return undefined;
  const words = JSON.parse(args) as unknown;
  return Array.isArray(words) && words.every((w) => typeof w === 'string') ? words : undefined;
}

function stripFlags(args: string): { flags: Map<string, string>; rest: string } {
  const flags = new Map<string, string>();
  let rest = args;
  for (let m = /^--([a-z-]+)(?:=(\S*))?\s+/.exec(rest); m; m = /^--([a-z-]+)(?:=(\S*))?\s+/.exec(rest)) {
    flags.set(m[1]!, m[2] ?? '');
    rest = rest.slice(m[0].length);
  }
  return { flags, rest };
}

/** Files that must come from a mount at run time, never from the build context. */
const KEY_MATERIAL = /\.(pem|key|p12|pfx)$|api_?key|token|secret|credential/i;

const SECRET_NAME = /PASSWORD|PASSWD|SECRET|TOKEN|PRIVATE|API_?KEY|CREDENTIAL/i;

/**
 * The problems of a Dockerfile, one line each ("line N: …"); none for a good one. `root` is the
 * build context, where COPY sources must exist.
 */
export function lintDockerfile(text: string, root: string): string[] {
  const problems: string[] = [];
  const at = (i: Instruction, what: string) => problems.push(`line ${i.line}: ${what}`);
  const instructions = parseDockerfile(text);
  const args = new Map<string, string>();
  const stages: string[] = [];
  const expand = (s: string) => s.replace(/\$\{?(\w+)\}?/g, (whole, name: string) => args.get(name) ?? whole);
  let lastUser: string | undefined;
  let healthcheck = false;
  let volume = false;
  const env = new Map<string, string>();
  for (const i of instructions) {
    if (!KEYWORDS.has(i.keyword)) at(i, `unknown instruction ${JSON.stringify(i.keyword || i.args)}`);
    if (/:latest\b/i.test(i.args)) at(i, 'names a "latest" tag (DL3007)');
    if (/pip3?\s+install\b[^&;]*\bpollen\b/.test(i.args))
      at(i, '"pip install pollen" installs an unrelated package: the SDK comes with Pollen');
    if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(i.args)) at(i, 'holds a private key');
    if (i.keyword === 'ARG') {
      const [name, value] = i.args.split('=', 2) as [string, string | undefined];
      if (SECRET_NAME.test(name))
        at(i, `build argument ${name} looks like a secret (it stays in the image history)`);
      if (value !== undefined) args.set(name, value);
    }
    if (i.keyword === 'ENV')
      for (const m of i.args.matchAll(/(\w+)=(\S*)/g)) {
        if (SECRET_NAME.test(m[1]!)) at(i, `ENV ${m[1]} looks like a secret (it stays in the image)`);
        env.set(m[1]!, m[2]!);
      }
    if (i.keyword === 'VOLUME') volume = true;
    if (i.keyword === 'FROM') {
      const { rest } = stripFlags(i.args);
      const [image, as, name] = rest.split(/\s+/);
      const resolved = expand(image!);
      const stage = stages.includes(resolved);
      if (!stage && !/^[\w./-]+(:[\w.-]+)?(@sha256:[0-9a-f]{64})?$/.test(resolved))
        at(i, `FROM ${image} does not resolve to an image name (${resolved})`);
      else if (!stage && !/:[\w.-]+/.test(resolved.split('/').pop()!) && !resolved.includes('@sha256:'))
        at(i, `FROM ${resolved} is not pinned to a tag (DL3006)`);
      else if (!stage && /:\d+(-[\w.]+)*$/.test(resolved))
        at(i, `FROM ${resolved} names a floating major tag`);
      else if (!stage && !resolved.includes('@sha256:'))
        at(i, `FROM ${resolved} is not pinned by digest (a tag can be moved)`);
      if (as?.toUpperCase() === 'AS' && name) stages.push(name);
      lastUser = undefined;
      healthcheck = false;
      volume = false;
    }
    if (i.keyword === 'COPY' || i.keyword === 'ADD') {
      const { flags, rest } = stripFlags(i.args);
      const from = flags.get('from');
      if (from !== undefined && !stages.includes(from))
        at(i, `COPY --from=${from} names no earlier stage (DL3022)`);
      if (from === undefined) {
        const paths = execForm(rest) ?? rest.split(/\s+/);
        for (const src of paths.slice(0, -1)) {
          if (!existsSync(join(root, expand(src)))) at(i, `COPY source ${src} is not in the build context`);
          if (KEY_MATERIAL.test(src)) at(i, `COPY ${src} bakes key material or a credential into the image`);
        }
      }
      if (i.keyword === 'ADD') at(i, 'use COPY, not ADD (DL3020)');
    }
    if (i.keyword === 'RUN') {
      if (/apt-get install/.test(i.args) && !/--no-install-recommends/.test(i.args))
        at(i, 'apt-get install without --no-install-recommends (DL3015)');
      if (/apt-get install/.test(i.args) && !/rm -rf \/var\/lib\/apt\/lists/.test(i.args))
        at(i, 'apt-get lists are left in the layer (DL3009)');
      if (/pip3?\s+install/.test(i.args) && !/--no-index/.test(i.args))
        at(i, 'pip install without --no-index reaches the network: install from the wheelhouse');
      if (/\b(curl|wget)\b/.test(i.args))
        at(i, 'downloads at build time: copy from the build context instead');
    }
    if (i.keyword === 'USER') lastUser = i.args;
    if (i.keyword === 'HEALTHCHECK') {
      healthcheck = true;
      const probe = execForm(stripFlags(i.args).rest.replace(/^CMD\s+/, ''));
      if (!/\bCMD\b/.test(i.args)) at(i, 'HEALTHCHECK without a CMD');
      else if (probe === undefined) at(i, 'HEALTHCHECK CMD in shell form');
      // An image without a Pollen service (no ops listener: JupyterHub's notebooks) probes its own.
      else if (!env.has('POLLEN_METRICS_ADDRESS')) healthcheck = true;
      else if (probe[0] !== 'pollen' || probe[1] !== 'ready')
        at(i, "HEALTHCHECK does not run `pollen ready` (the ops listener's /readyz)");
      else if (probe[2] !== env.get('POLLEN_METRICS_ADDRESS'))
        at(i, `HEALTHCHECK probes ${probe[2]}, not the ops listener POLLEN_METRICS_ADDRESS names`);
    }
    if ((i.keyword === 'CMD' || i.keyword === 'ENTRYPOINT') && execForm(i.args) === undefined)
      at(i, `${i.keyword} in shell form: signals do not reach the process (DL3025)`);
  }
  const last = { line: instructions.at(-1)?.line ?? 0, keyword: '', args: '' };
  if (lastUser === undefined) at(last, 'the image runs as root: no USER in the last stage (DL3002)');
  else if (/^(root|0)(:|$)/.test(lastUser)) at(last, `the image runs as ${lastUser} (DL3002)`);
  if (!healthcheck) at(last, 'no HEALTHCHECK in the last stage');
  if (!volume)
    at(last, 'no VOLUME in the last stage: a read-only root file system leaves it nowhere to write');
  if (!/^#\s.*docker run --read-only --tmpfs \/tmp\b/m.test(text))
    at(last, 'the header does not show the read-only run (docker run --read-only --tmpfs /tmp …)');
  return problems;
}
