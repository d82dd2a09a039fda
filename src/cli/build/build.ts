import { relative } from 'node:path';
import { buildApp } from '../../apps/build.js';
import { bold, dim, type Output, ok } from '../output.js';

export interface BuildOptions {
  /** The app folder (default: the working folder). */
  appDir: string;
  /** Folder for the .pollen file (default APP_DIR/dist). */
  out?: string;
  minify?: boolean;
}

/** Relative to the working folder when inside it, else absolute. */
function shortPath(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel === '' || rel.startsWith('..') ? path : rel;
}

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/** `pollen build`: bundle an app folder into one .pollen file and list what went in. */
export async function build(o: BuildOptions, out: Output): Promise<void> {
  out.progress(`building ${o.appDir}`);
  const built = await buildApp(o.appDir, {
    ...(o.out !== undefined && { outDir: o.out }),
    ...(o.minify && { minify: true }),
  });
  for (const w of built.warnings) out.warn(w);
  const result = {
    path: built.path,
    hash: built.hash,
    size: built.size,
    name: built.manifest.name,
    version: built.manifest.version,
    serverapp: built.manifest.serverapp,
    clientapp: built.manifest.clientapp,
    ...(built.manifest.runtime !== undefined && {
      runtime: built.manifest.runtime,
      requirements: built.manifest.requirements ?? [],
    }),
    sdkVersion: built.manifest.sdkVersion,
    config: built.manifest.config,
    files: built.manifest.files,
    warnings: built.warnings,
  };
  out.result(result, (r) => [
    `${ok('built')} ${bold(shortPath(r.path))} (${mb(r.size)})`,
    `  hash ${r.hash}`,
    ...r.files.map((f) => dim(`  ${String(f.size).padStart(10)}  ${f.path}`)),
  ]);
}
