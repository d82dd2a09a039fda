/**
 * A compose service's process as a container engine would start it, for running it here without
 * one: the argv (the service's entrypoint and command, else the image's ENTRYPOINT and CMD from
 * its Dockerfile, as compose combines them), the environment (the image's ENV, then the
 * service's), the working folder (the image's WORKDIR). Container paths become folders of the
 * host: each volume's and secret's target its source under `root`, an anonymous VOLUME a folder
 * of its own, and what the image itself holds (IMAGE_PATHS) the repository and Debian's Python.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { execForm, parseDockerfile } from './dockerfile.js';

export interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile: string };
  entrypoint?: string[];
  command?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  secrets?: string[];
  healthcheck?: { test: string[] };
  [key: string]: unknown;
}

export interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
  secrets?: Record<string, { file: string }>;
}

export interface ServiceProcess {
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  /** The uid of the service's `user` (useradd --uid in its Dockerfile). */
  uid: number;
  /** Container path → host path, longest first. */
  paths: [string, string][];
  /**
   * The named volumes' folders, each with the owner a container engine gives a new volume: the
   * image's folder at the target's (a home made by useradd: the user), else root.
   */
  volumes: { path: string; uid: number }[];
}

const REPO = resolve(import.meta.dirname, '..', '..');

/** What the images hold, on this machine: Pollen built from this repository, Debian's Python. */
const IMAGE_PATHS: Record<string, string> = {
  '/opt/pollen': REPO,
  '/opt/venv/bin/python': '/usr/bin/python3',
};

/** Compose's own interpolation: `$$` is a `$`; the file uses no variables. */
function interpolate(text: string): string {
  if (/\$(?!\$)\{?\w/.test(text.replace(/\$\$/g, ''))) throw new Error(`a variable in ${text}`);
  return text.replace(/\$\$/g, '$');
}

/** Replace container paths by host paths where a path starts (not inside another word). */
function translate(text: string, paths: [string, string][]): string {
  let out = text;
  for (const [from, to] of paths)
    out = out.replace(
      new RegExp(`(^|[\\s="'])${from.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?=$|[/\\s"'])`, 'g'),
      (_m, before: string) => `${before}${to}`,
    );
  return out;
}

/** The image's instructions, read from the Dockerfile its `build:` names. */
function imageOf(service: ComposeService, composeDir: string) {
  if (!service.build) throw new Error('a Pollen service names the Dockerfile it is built from');
  const dockerfile = readFileSync(join(composeDir, service.build.context, service.build.dockerfile), 'utf8');
  const instructions = parseDockerfile(dockerfile);
  const from = instructions.map((i) => i.keyword).lastIndexOf('FROM');
  const lastStage = instructions.slice(from);
  const last = (k: string) => lastStage.filter((i) => i.keyword === k).at(-1)?.args;
  const env: Record<string, string> = {};
  for (const i of lastStage.filter((i) => i.keyword === 'ENV'))
    for (const m of i.args.matchAll(/(\w+)=(\S+)/g)) env[m[1]!] = m[2]!;
  const users = new Map<string, { uid: number; home: string }>();
  for (const i of lastStage.filter((i) => i.keyword === 'RUN'))
    for (const m of i.args.matchAll(
      /useradd [^&;]*--uid (\d+) [^&;]*--home-dir (\S+)[^&;]* (\w+)\s*($|&&|;)/g,
    ))
      users.set(m[3]!, { uid: Number(m[1]), home: m[2]! });
  return {
    users,
    entrypoint: execForm(last('ENTRYPOINT') ?? '[]') ?? [],
    cmd: execForm(last('CMD') ?? '[]') ?? [],
    env,
    workdir: last('WORKDIR') ?? '/',
    anonymousVolumes: (execForm(last('VOLUME') ?? '[]') ?? []) as string[],
  };
}

/**
 * The process of service `name`. Named volumes live in ROOT/volumes/NAME, bind mounts and secret
 * files relative to the compose file's folder `root` (where the operator keeps ./ca, ./secrets).
 */
export function serviceProcess(
  file: ComposeFile,
  name: string,
  root: string,
  composeDir: string,
): ServiceProcess {
  const service = file.services[name]!;
  const img = imageOf(service, composeDir);
  const user = img.users.get(String(service['user']));
  if (!user) throw new Error(`${name}: the image makes no user ${String(service['user'])}`);
  const volumes: { path: string; uid: number }[] = [];
  const mounts: [string, string][] = [];
  for (const v of img.anonymousVolumes) mounts.push([v, join(root, 'anonymous', name, v)]);
  for (const v of service.volumes ?? []) {
    const [source, target] = v.split(':') as [string, string];
    // ./ names the operator's files (made in `root`), ../ the repository's beside deploy/compose.
    const host = source.startsWith('./')
      ? resolve(root, source)
      : source.startsWith('../')
        ? resolve(composeDir, source)
        : join(root, 'volumes', source);
    if (!source.startsWith('.')) volumes.push({ path: host, uid: target === user.home ? user.uid : 0 });
    mounts.push([target, host]);
  }
  for (const s of service.secrets ?? [])
    mounts.push([`/run/secrets/${s}`, resolve(root, file.secrets![s]!.file)]);
  for (const [from, to] of Object.entries(IMAGE_PATHS)) mounts.push([from, to]);
  // A later mount over the same target wins (a named volume over the image's VOLUME).
  const byTarget = new Map(mounts);
  const paths = [...byTarget].sort((a, b) => b[0].length - a[0].length);
  // compose: an entrypoint given in the file drops the image's CMD unless a command is given too.
  const entrypoint = service.entrypoint ?? img.entrypoint;
  const command = service.command ?? (service.entrypoint ? [] : img.cmd);
  const env = { ...img.env, ...(service.environment ?? {}) };
  return {
    argv: [...entrypoint, ...command].map((a) => translate(interpolate(a), paths)),
    env: Object.fromEntries(Object.entries(env).map(([k, v]) => [k, translate(interpolate(v), paths)])),
    cwd: translate(img.workdir, paths),
    uid: user.uid,
    paths,
    volumes,
  };
}
