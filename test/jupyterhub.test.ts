/**
 * deploy/jupyterhub/jupyterhub_config.py, loaded by Debian's JupyterHub 3.0 (/usr/bin/python3) as
 * the hub loads it. Debian packages neither OAuthenticator nor DockerSpawner: both are stubbed as
 * modules whose classes subclass JupyterHub's Authenticator and Spawner, so the hub resolves the
 * configured class names to them; what is asserted is the configuration the file sets — sign-in
 * against the realm's `jupyterhub` client, the groups that may sign in, restricted containers
 * with limits and a workspace per researcher — not the behaviour of those packages.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { keycloakRealm, ROLE_GROUPS, SAMPLE_REALM } from '../src/deploy/keycloak-realm.js';
import { tempDir } from './support/cli.js';
import { PYTHON } from './support/python.js';

const CONFIG = join(import.meta.dirname, '..', 'deploy', 'jupyterhub', 'jupyterhub_config.py');
const tmp = tempDir('pollen-jupyterhub-');
afterAll(() => tmp.cleanup());

const STUBS = {
  'oauthenticator/__init__.py': '',
  'oauthenticator/generic.py':
    'from jupyterhub.auth import Authenticator\n\n\nclass GenericOAuthenticator(Authenticator):\n    """stub"""\n',
  'dockerspawner/__init__.py': [
    'from jupyterhub.spawner import Spawner',
    '',
    '',
    'class DockerSpawner(Spawner):',
    '    # JupyterHub checks that a spawner class defines these.',
    '    async def start(self): ...',
    '',
    '    async def stop(self): ...',
    '',
    '    async def poll(self): ...',
    '',
  ].join('\n'),
};

/** Loads the config as the hub does and prints what it set, as JSON. */
const LOAD = join(import.meta.dirname, 'support', 'jupyterhub_load.py');

interface Loaded {
  JupyterHub: Record<string, unknown>;
  GenericOAuthenticator: Record<string, unknown>;
  DockerSpawner: Record<string, unknown>;
  Spawner: Record<string, unknown>;
  classes: string[];
}

function load(env: Record<string, string> = {}): {
  status: number | null;
  json: () => Loaded;
  stderr: string;
} {
  const stubs = join(tmp.dir, 'stubs');
  for (const [path, text] of Object.entries(STUBS)) {
    mkdirSync(join(stubs, path, '..'), { recursive: true });
    writeFileSync(join(stubs, path), text);
  }
  const credentials = join(tmp.dir, 'credentials');
  mkdirSync(credentials, { recursive: true });
  writeFileSync(join(credentials, 'jupyterhub_client_secret'), 'from-keycloak\n');
  const r = spawnSync(PYTHON, [LOAD, CONFIG], {
    encoding: 'utf8',
    env: { PATH: process.env['PATH'], PYTHONPATH: stubs, CREDENTIALS_DIRECTORY: credentials, ...env },
  });
  return { status: r.status, stderr: r.stderr, json: () => JSON.parse(r.stdout) as Loaded };
}

/** The sample's settings (no environment), loaded once. */
let sample: Loaded | undefined;
const loadSample = () => {
  if (sample) return sample;
  const r = load();
  expect(r.status, r.stderr).toBe(0);
  sample = r.json();
  return sample;
};

describe('deploy/jupyterhub/jupyterhub_config.py', () => {
  it("signs researchers in with Keycloak's jupyterhub client and lets in only the realm's Pollen groups", () => {
    const c = loadSample();
    expect(c.classes).toEqual([
      'oauthenticator.generic.GenericOAuthenticator',
      'dockerspawner.DockerSpawner',
    ]);
    const oidc = 'https://id.example.org/realms/pollen/protocol/openid-connect';
    const realm = keycloakRealm(SAMPLE_REALM);
    const client = realm.clients?.find((x) => x.clientId === c.GenericOAuthenticator['client_id']);
    // The realm's client, and the redirect URI Keycloak allows for it.
    expect(client?.publicClient).toBe(false);
    expect(client?.redirectUris).toEqual([c.GenericOAuthenticator['oauth_callback_url']]);
    expect(c.GenericOAuthenticator).toMatchObject({
      client_secret: 'from-keycloak',
      authorize_url: `${oidc}/auth`,
      token_url: `${oidc}/token`,
      userdata_url: `${oidc}/userinfo`,
      scope: ['openid', 'profile', 'email'],
      username_claim: 'preferred_username',
      manage_groups: true,
      auth_state_groups_key: 'oauth_user.groups',
      allow_all: false,
      admin_groups: ['/pollen/project-admins'],
      // No researcher token is kept by the hub: `pollen login` in the notebook holds them.
      enable_auth_state: false,
    });
    // Exactly the realm's role groups (full paths, as its Group Membership mapper writes them).
    expect(c.GenericOAuthenticator['allowed_groups']).toEqual(
      Object.values(ROLE_GROUPS)
        .map((g) => `/pollen/${g}`)
        .sort(),
    );
  });

  it('spawns restricted containers: no privilege or capability, read-only, limits, a workspace volume per researcher', () => {
    const c = loadSample();
    expect(c.DockerSpawner).toMatchObject({
      image: 'myorg/pollen-jupyter-singleuser:0.1.0',
      allowed_images: [],
      network_name: 'pollen_default',
      notebook_dir: '/home/researcher',
      volumes: { 'pollen-jupyter-{username}': '/home/researcher' },
      cpu_limit: 2,
      mem_limit: '4G',
      extra_host_config: {
        privileged: false,
        cap_drop: ['ALL'],
        security_opt: ['no-new-privileges:true'],
        read_only: true,
        pids_limit: 512,
      },
      environment: { POLLEN_SUPERLINK: 'lab', PROJECT_SUPERLINK_ADDRESS: 'superlink.example.org:9093' },
    });
    // The volume is the image's home (deploy/docker/Dockerfile.jupyter-singleuser).
    const dockerfile = readFileSync(
      join(import.meta.dirname, '..', 'deploy', 'docker', 'Dockerfile.jupyter-singleuser'),
      'utf8',
    );
    expect(dockerfile).toContain('VOLUME ["/home/researcher"]');
    expect(dockerfile).toContain(`-t ${c.DockerSpawner['image']} .`);
  });

  it('takes its sites from the environment, and refuses to start without the client secret', () => {
    const c = load({
      HUB_KEYCLOAK_URL: 'https://login.hospital.example',
      HUB_PUBLIC_URL: 'https://notebooks.hospital.example',
      HUB_NOTEBOOK_MEMORY: '8G',
    }).json();
    expect(c.GenericOAuthenticator['token_url']).toBe(
      'https://login.hospital.example/realms/pollen/protocol/openid-connect/token',
    );
    expect(c.GenericOAuthenticator['oauth_callback_url']).toBe(
      'https://notebooks.hospital.example/hub/oauth_callback',
    );
    expect(c.DockerSpawner['mem_limit']).toBe('8G');
    const missing = load({ CREDENTIALS_DIRECTORY: join(tmp.dir, 'nowhere') });
    expect(missing.status).not.toBe(0);
    expect(missing.stderr).toMatch(/nowhere\/jupyterhub_client_secret/);
  });
});
