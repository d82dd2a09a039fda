/**
 * Renders a Kustomize overlay the way `kubectl kustomize` does, for the part of Kustomize that
 * `pollen deploy kubernetes` writes: `resources` (YAML files, and folders holding a
 * kustomization.yaml) and `namespace` (set on every namespaced object; a Namespace object keeps its
 * name). Any other field fails, so an overlay never holds something this rendering ignores.
 * (The kubectl on these machines does not come from Debian, so the tests do not depend on it.)
 */
import { readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseAllDocuments, parse as parseYaml } from 'yaml';

export type Rendered = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  // Manifests are checked field by field by the tests.
  spec?: any;
};

const KNOWN_FIELDS = new Set(['apiVersion', 'kind', 'resources', 'namespace']);
const CLUSTER_SCOPED = new Set(['Namespace']);

export function kustomize(dir: string): Rendered[] {
  const k = parseYaml(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as Record<string, unknown>;
  const unknown = Object.keys(k).filter((f) => !KNOWN_FIELDS.has(f));
  if (unknown.length > 0) throw new Error(`${dir}: kustomization fields this rendering lacks: ${unknown}`);
  const objects: Rendered[] = [];
  for (const entry of (k.resources as string[]) ?? []) {
    const path = resolve(dir, entry);
    if (statSync(path).isDirectory()) objects.push(...kustomize(path));
    else
      for (const doc of parseAllDocuments(readFileSync(path, 'utf8'))) {
        if (doc.errors.length > 0) throw new Error(`${path}: ${doc.errors[0]!.message}`);
        objects.push(doc.toJS() as Rendered);
      }
  }
  const namespace = k.namespace as string | undefined;
  if (namespace) for (const o of objects) if (!CLUSTER_SCOPED.has(o.kind)) o.metadata.namespace = namespace;
  return objects;
}
