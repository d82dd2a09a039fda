/**
 * deploy/docker: the SuperNode images (CPU and GPU), linted here since no Docker engine runs on
 * these machines (test/support/dockerfile.ts), and the settings a site relies on.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { execForm, lintDockerfile, parseDockerfile } from './support/dockerfile.js';

const root = join(import.meta.dirname, '..');
const read = (name: string) => readFileSync(join(root, 'deploy/docker', name), 'utf8');

describe('the SuperNode Dockerfiles', () => {
  for (const name of ['Dockerfile.supernode', 'Dockerfile.supernode-gpu'])
    it(`${name} passes the lint: pinned bases, non-root user, health check, no network at run time`, () => {
      const text = read(name);
      expect(lintDockerfile(text, root)).toEqual([]);
      const last = (k: string) =>
        parseDockerfile(text)
          .filter((i) => i.keyword === k)
          .at(-1)!;
      const entrypoint = execForm(last('ENTRYPOINT').args)!;
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
      // The health check probes the ClientAppIo port the SuperNode is told to serve.
      expect(entrypoint.join(' ')).toContain('--clientappio-address 127.0.0.1:9094');
      expect(last('HEALTHCHECK').args).toContain("connect(9094, '127.0.0.1')");
      expect(last('USER').args).toBe('pollen');
      expect(text).not.toMatch(/pip install pollen/);
    });

  it('the GPU image starts from a CUDA base, copies Node.js from the official image and installs PyTorch from a wheelhouse', () => {
    const text = read('Dockerfile.supernode-gpu');
    expect(text).toMatch(/^ARG CUDA_IMAGE=nvidia\/cuda:12\.\d+\.\d+-base-ubuntu24\.04$/m);
    expect(text).toMatch(/^FROM \$\{CUDA_IMAGE\}$/m);
    expect(text).toMatch(/^COPY --from=node \/usr\/local\/bin\/node \/usr\/local\/bin\/node$/m);
    expect(text).toMatch(/pip install --no-index --no-cache-dir --find-links \/wheelhouse/);
    expect(text).toMatch(/POLLEN_RESOURCES=gpu=1/);
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
      /the image runs as root: no USER/,
      /no HEALTHCHECK/,
    ])
      expect(
        problems.some((p) => expected.test(p)),
        `${expected} in\n${problems.join('\n')}`,
      ).toBe(true);
    expect(lintDockerfile('FROM a:1.2\nUSER 0\nHEALTHCHECK CMD ["true"]', root)).toEqual([
      'line 3: the image runs as 0 (DL3002)',
    ]);
  });
});
