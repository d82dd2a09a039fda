/**
 * The Python SDK's messages: sdk/python/pollen/_proto is exactly what scripts/gen-python-proto.sh
 * makes from proto/ with Debian's protoc, and every rpc the SDK calls by name exists there.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PYTHON } from './support/python.js';

const root = join(import.meta.dirname, '..');
const sdk = join(root, 'sdk', 'python');
const committed = join(sdk, 'pollen', '_proto');
const tmp = mkdtempSync(join(tmpdir(), 'pollen-pyproto-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function files(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && !e.name.endsWith('.pyc'))
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}

/** '/pollen.v1.Service/Method' strings in the SDK's own modules. */
function methodsCalled(): string[] {
  const found = new Set<string>();
  for (const f of files(join(sdk, 'pollen')))
    if (f.endsWith('.py') && !f.startsWith('_proto'))
      for (const m of readFileSync(join(sdk, 'pollen', f), 'utf8').matchAll(
        /['"]\/(pollen\.v1\.\w+\/\w+)['"]/g,
      ))
        found.add(m[1]!);
  return [...found].sort();
}

describe('sdk/python/pollen/_proto', () => {
  it('matches what scripts/gen-python-proto.sh generates from proto/', () => {
    const out = join(tmp, '_proto');
    const r = spawnSync('bash', [join(root, 'scripts', 'gen-python-proto.sh'), out], { encoding: 'utf8' });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const names = files(out);
    expect(names).toEqual(files(committed));
    for (const f of names)
      expect(readFileSync(join(out, f), 'utf8'), `${f} is stale: run scripts/gen-python-proto.sh`).toBe(
        readFileSync(join(committed, f), 'utf8'),
      );
  });

  it('defines every rpc the SDK calls by name', () => {
    const called = methodsCalled();
    expect(called).toContain('pollen.v1.ClientAppIo/PullTask');
    const script = `
import json, sys
from pollen._proto.pollen.v1 import appio_pb2, control_pb2, fleet_pb2
from google.protobuf import descriptor_pool
pool = descriptor_pool.Default()
missing = []
for name in json.loads(sys.argv[1]):
    service, method = name.split('/')
    try:
        if pool.FindServiceByName(service).FindMethodByName(method) is None: missing.append(name)
    except KeyError:
        missing.append(name)
print(json.dumps(missing))
`;
    const r = spawnSync(PYTHON, ['-c', script, JSON.stringify(called)], {
      encoding: 'utf8',
      env: { ...process.env, PYTHONPATH: sdk, PYTHONDONTWRITEBYTECODE: '1' },
    });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([]);
  });
});
