/**
 * deploy/docker: the SuperLink, Certificate Service and SuperNode (CPU and GPU) images, linted here
 * since no Docker engine runs on these machines (test/support/dockerfile.ts), and the settings a
 * site relies on. scripts/build-images.sh builds and starts the SuperLink, Certificate Service and
 * CPU SuperNode images with podman from a locally made base; here it is linted, and
 * test/images.test.ts builds and starts the cheapest of them.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { execForm, lintDockerfile, parseDockerfile } from './support/dockerfile.js';

const root = join(import.meta.dirname, '..');
const read = (name: string) => readFileSync(join(root, 'deploy/docker', name), 'utf8');

const last = (text: string, k: string) =>
  parseDockerfile(text)
    .filter((i) => i.keyword === k)
    .at(-1)!;

describe('the Dockerfiles', () => {
  it('every image in deploy/docker passes the lint: bases pinned by digest, non-root, read-only run, health via pollen ready, no secret', () => {
    const names = readdirSync(join(root, 'deploy/docker')).filter((n) => n.startsWith('Dockerfile.'));
    expect(names.sort()).toEqual([
      'Dockerfile.cert-service',
      'Dockerfile.jupyter-singleuser',
      'Dockerfile.superlink',
      'Dockerfile.supernode',
      'Dockerfile.supernode-gpu',
    ]);
    for (const name of names) {
      const text = read(name);
      expect(lintDockerfile(text, root), name).toEqual([]);
      expect(last(text, 'USER').args, name).toBe(name.includes('jupyter') ? 'researcher' : 'pollen');
    }
  });

  it('the SuperLink image starts its kit with pollen start and probes its ops listener (9095)', () => {
    const text = read('Dockerfile.superlink');
    expect(execForm(last(text, 'ENTRYPOINT').args)).toEqual(['tini', '--', 'pollen', 'start']);
    expect(execForm(last(text, 'CMD').args)).toEqual(['/kit']);
    expect(last(text, 'HEALTHCHECK').args).toContain('"pollen", "ready", "127.0.0.1:9095"');
    expect(last(text, 'EXPOSE').args).toBe('9092 9093');
  });

  it('the Certificate Service image reads its CA and API key from mounts and probes 9097', () => {
    const text = read('Dockerfile.cert-service');
    const entrypoint = execForm(last(text, 'ENTRYPOINT').args)!;
    expect(entrypoint.slice(0, 4)).toEqual(['tini', '--', 'pollen', 'cert-service']);
    expect(entrypoint.join(' ')).toContain('--ca /ca');
    expect(entrypoint.join(' ')).toContain('--api-key-file /run/secrets/api_key');
    expect(last(text, 'HEALTHCHECK').args).toContain('"pollen", "ready", "127.0.0.1:9097"');
    expect(text).not.toMatch(/python3/);
  });
  for (const name of ['Dockerfile.supernode', 'Dockerfile.supernode-gpu'])
    it(`${name} runs the SuperNode with the image's Python and probes its ops listener (9096)`, () => {
      const text = read(name);
      const entrypoint = execForm(last(text, 'ENTRYPOINT').args)!;
      // Python apps run with the image's virtual environment, which a RUN creates.
      expect(entrypoint.slice(0, 6)).toEqual([
        'tini',
        '--',
        'pollen',
        'supernode',
        '--python',
        '/opt/venv/bin/python',
      ]);
      expect(text).toMatch(/python3 -m venv (--system-site-packages )?\/opt\/venv/);
      expect(entrypoint.join(' ')).toContain('--clientappio-address 127.0.0.1:9094');
      expect(last(text, 'HEALTHCHECK').args).toContain('"pollen", "ready", "127.0.0.1:9096"');
      expect(text).not.toMatch(/pip install pollen/);
    });

  it('the GPU image starts from a CUDA base, copies Node.js from the official image and installs PyTorch from a wheelhouse', () => {
    const text = read('Dockerfile.supernode-gpu');
    expect(text).toMatch(/^ARG CUDA_IMAGE=nvidia\/cuda:12\.\d+\.\d+-base-ubuntu24\.04@sha256:[0-9a-f]{64}$/m);
    expect(text).toMatch(/^FROM \$\{CUDA_IMAGE\}$/m);
    expect(text).toMatch(/^COPY --from=node \/usr\/local\/bin\/node \/usr\/local\/bin\/node$/m);
    expect(text).toMatch(/pip install --no-index --no-cache-dir --find-links \/wheelhouse/);
    expect(text).toMatch(/POLLEN_RESOURCES=gpu=1/);
  });

  it("the notebook image holds the Pollen CLI and Python SDK and runs JupyterHub's single-user server as the researcher", () => {
    const text = read('Dockerfile.jupyter-singleuser');
    expect(execForm(last(text, 'ENTRYPOINT').args)).toEqual(['tini', '--']);
    expect(execForm(last(text, 'CMD').args)).toEqual(['jupyterhub-singleuser']);
    expect(text).toMatch(/^RUN ln -s \/opt\/pollen\/bin\/pollen\.js \/usr\/local\/bin\/pollen/m);
    // `import pollen` finds the SDK of the Pollen in the image, never a package of that name.
    expect(text).toMatch(/PYTHONPATH=\/opt\/pollen\/sdk\/python/);
    const install = parseDockerfile(text).find((i) => /apt-get install/.test(i.args))!.args;
    for (const pkg of [
      'python3-numpy',
      'python3-grpcio',
      'python3-protobuf',
      'jupyterhub',
      'python3-ipykernel',
    ])
      expect(install.split(/\s+/)).toContain(pkg);
    // The workspace volume is the home the spawner mounts (jupyterhub_config.py).
    expect(last(text, 'VOLUME').args).toBe('["/home/researcher"]');
    expect(last(text, 'HEALTHCHECK').args).toContain('127.0.0.1:8888');
  });

  it('every image that builds dist/ copies in the files its build script runs (the bundle step)', () => {
    const build = (
      JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: { build: string } }
    ).scripts.build;
    const scripts = [...build.matchAll(/node (scripts\/\S+)/g)].map((m) => m[1] as string);
    expect(scripts).toEqual(['scripts/bundle.mjs']);
    for (const name of readdirSync(join(root, 'deploy/docker')).filter((n) => n.startsWith('Dockerfile.'))) {
      const copied = parseDockerfile(read(name))
        .filter((i) => i.keyword === 'COPY' && !i.args.startsWith('--from'))
        .map((i) => i.args.split(/\s+/)[0]);
      for (const file of scripts) expect(copied, name).toContain(file);
    }
  });

  it('scripts/build-images.sh, which builds them with podman from a local base, passes shellcheck', () => {
    const check = spawnSync('shellcheck', ['--severity=style', join(root, 'scripts/build-images.sh')], {
      encoding: 'utf8',
    });
    expect(check.stdout).toBe('');
    expect(check.status).toBe(0);
  });

  it('the lint catches each rule it keeps', () => {
    const bad = [
      'FROM node:latest',
      'FROM node:20 AS n',
      'FROM debian',
      'ARG NPM_TOKEN=abc',
      'ENV DB_PASSWORD=hunter2',
      'COPY --from=nowhere /a /b',
      'COPY missing-file /x',
      'ADD package.json /x',
      'RUN apt-get update && apt-get install -y python3',
      'RUN pip install pollen',
      'RUN curl -fsSL https://example.com/x.sh | sh',
      'FOO bar',
      'CMD pollen supernode',
      'FROM node:20.20.2-bookworm-slim',
      'COPY deploy/keycloak/realm.json certs/server.key /x/',
      'ENV POLLEN_METRICS_ADDRESS=127.0.0.1:9095',
      'HEALTHCHECK CMD ["curl", "-f", "http://127.0.0.1:9095/healthz"]',
      'HEALTHCHECK CMD ["pollen", "ready", "127.0.0.1:9096"]',
    ].join('\n');
    const problems = lintDockerfile(bad, root);
    for (const expected of [
      /line 1: names a "latest" tag/,
      /line 2: FROM node:20 names a floating major tag/,
      /line 3: FROM debian is not pinned to a tag/,
      /line 4: build argument NPM_TOKEN looks like a secret/,
      /line 5: ENV DB_PASSWORD looks like a secret/,
      /line 6: COPY --from=nowhere names no earlier stage/,
      /line 7: COPY source missing-file is not in the build context/,
      /line 8: use COPY, not ADD/,
      /line 9: apt-get install without --no-install-recommends/,
      /line 9: apt-get lists are left in the layer/,
      /line 10: "pip install pollen" installs an unrelated package/,
      /line 10: pip install without --no-index/,
      /line 11: downloads at build time/,
      /line 12: unknown instruction "FOO"/,
      /line 13: CMD in shell form/,
      /line 14: FROM node:20.20.2-bookworm-slim is not pinned by digest/,
      /line 15: COPY certs\/server.key bakes key material/,
      /line 17: HEALTHCHECK does not run `pollen ready`/,
      /line 18: HEALTHCHECK probes 127.0.0.1:9096, not the ops listener/,
      /the image runs as root: no USER/,
      /no VOLUME in the last stage/,
      /the header does not show the read-only run/,
    ])
      expect(
        problems.some((p) => expected.test(p)),
        `${expected} in\n${problems.join('\n')}`,
      ).toBe(true);
    expect(lintDockerfile('FROM a:1.2\nUSER 0\nHEALTHCHECK CMD ["true"]', root)).toEqual(
      expect.arrayContaining(['line 3: the image runs as 0 (DL3002)']),
    );
    expect(lintDockerfile('FROM a:1.2\nUSER 0\nHEALTHCHECK CMD ["true"]', root)).toContain(
      'line 1: FROM a:1.2 is not pinned by digest (a tag can be moved)',
    );
    expect(lintDockerfile('FROM a:1.2\nUSER pollen', root)).toContain(
      'line 2: no HEALTHCHECK in the last stage',
    );
  });
});
