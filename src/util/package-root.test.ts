import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { FROM_SOURCE, ownScript, packageDir, packageFile } from './package-root.js';

const ROOT = resolve(import.meta.dirname, '../..');
const SRC = join(ROOT, 'src');

/** The `import.meta` expressions of a TypeScript file (not in strings or comments). */
function importMetaUses(file: string): number {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  let n = 0;
  const visit = (node: ts.Node): void => {
    if (ts.isMetaProperty(node) && node.keywordToken === ts.SyntaxKind.ImportKeyword) n++;
    ts.forEachChild(node, visit);
  };
  visit(source);
  return n;
}

describe('package-root', () => {
  it('finds the package from its sources: package.json named pollen, its files under it', () => {
    expect(packageDir()).toBe(ROOT);
    expect(JSON.parse(readFileSync(packageFile('package.json'), 'utf8')).name).toBe('pollen');
    expect(packageFile('templates', 'ts')).toBe(join(ROOT, 'templates', 'ts'));
  });

  it('names the TypeScript file of a script from the sources', () => {
    expect(FROM_SOURCE).toBe(true);
    expect(ownScript('apps/runner')).toBe(join(ROOT, 'src', 'apps', 'runner.ts'));
  });

  it('is the only module that finds files from import.meta (in the bundle it is the URL of the bundle file)', () => {
    const users = readdirSync(SRC, { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && !f.startsWith('gen/'))
      .filter((f) => importMetaUses(join(SRC, f)) > 0)
      .map((f) => relative(SRC, join(SRC, f)));
    expect(users).toEqual(['util/package-root.ts']);
  });
});
