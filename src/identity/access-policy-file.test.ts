import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PollenError } from '../errors.js';
import { DEFAULT_ACCESS_POLICY_YAML, loadAccessPolicy, parseAccessPolicy } from './access-policy-file.js';
import { DEFAULT_ACCESS_POLICY } from './rights.js';

function problems(text: string): string[] {
  try {
    parseAccessPolicy(text, 'access.yaml');
  } catch (e) {
    if (!(e instanceof PollenError)) throw e;
    expect(e.code).toBe('ACCESS_POLICY_INVALID');
    return (e.data!['issues'] as Array<{ line: number; message: string; path: string }>).map(
      (i) => `${i.line} ${i.path}: ${i.message}`,
    );
  }
  return [];
}

describe('the access policy file', () => {
  it('ships a default file that means exactly DEFAULT_ACCESS_POLICY', () => {
    expect(parseAccessPolicy(DEFAULT_ACCESS_POLICY_YAML, 'built-in')).toEqual(DEFAULT_ACCESS_POLICY);
    expect(loadAccessPolicy()).toEqual(DEFAULT_ACCESS_POLICY);
    // docs/identity.md shows the file as it is.
    const doc = readFileSync(new URL('../../docs/identity.md', import.meta.url), 'utf8');
    expect(doc).toContain(`\`\`\`yaml\n${DEFAULT_ACCESS_POLICY_YAML}\`\`\``);
  });

  it('gives a role the file leaves out, or leaves empty, no rights', () => {
    expect(parseAccessPolicy('lead:\n  run.submit: org\nmember:\n')).toEqual({
      project_admin: {},
      org_admin: {},
      lead: { 'run.submit': 'org' },
      member: {},
    });
    expect(parseAccessPolicy('')).toEqual({ project_admin: {}, org_admin: {}, lead: {}, member: {} });
  });

  it('reports every problem with its line: unknown role or right, bad scope, keys given twice', () => {
    const text = [
      'project_admin:', //             1
      '  run.submit: any', //          2
      '  run.sumbit: any', //          3
      'leads:', //                     4
      '  run.view: any', //            5
      'lead:', //                      6
      '  run.stop: mine', //           7
      '  run.view:', //                8
      '  run.stop: own', //            9
      'lead:', //                      10
      '  run.view: any', //            11
      'member: [run.view]', //         12
    ].join('\n');
    expect(problems(text)).toEqual([
      '3 project_admin.run.sumbit: is not a right (rights: run.submit, run.stop, run.view, node.manage, enrollment.decide, service_account.manage, audit.read, federation.create, federation.manage)',
      '4 leads: is not a role (roles: project_admin, org_admin, lead, member)',
      '7 lead.run.stop: must be a scope: own, org, any (leave the right out to deny it)',
      '8 lead.run.view: must be a scope: own, org, any (leave the right out to deny it)',
      '9 lead.run.stop: is given twice (first on line 7)',
      '10 lead: is given twice (first on line 6)',
      '12 member: must map rights to scopes (run.view: any)',
    ]);
  });

  it('puts the lines in the message, and reports YAML syntax errors and a document of the wrong shape', () => {
    expect(() => parseAccessPolicy('lead:\n  run.view: every\n', 'access.yaml')).toThrow(
      'Invalid access policy access.yaml: line 2: lead.run.view must be a scope: own, org, any (leave the right out to deny it)',
    );
    expect(problems('lead:\n  run.view: [any\n')[0]).toMatch(/^3 : YAML syntax: /);
    expect(problems('- lead\n- member\n')).toEqual([
      '1 : must map roles to their rights (project_admin, org_admin, lead, member)',
    ]);
  });

  it('loads a file, and says which path is missing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pollen-access-'));
    const file = join(dir, 'access.yaml');
    writeFileSync(file, 'member:\n  run.view: org\n');
    expect(loadAccessPolicy(file).member).toEqual({ 'run.view': 'org' });
    expect(() => loadAccessPolicy(join(dir, 'nope.yaml'))).toThrow(
      expect.objectContaining({ code: 'FILE_NOT_FOUND' }),
    );
    expect(() => loadAccessPolicy(dir)).toThrow(expect.objectContaining({ code: 'ACCESS_POLICY_INVALID' }));
    writeFileSync(file, 'member:\n  run.view: every\n');
    expect(() => loadAccessPolicy(file)).toThrow(`Invalid access policy ${file}: line 2`);
  });
});
