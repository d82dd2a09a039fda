/**
 * The token verifier against a real OpenID Provider (`oidc-provider`): its discovery document,
 * its JWKS and the JWT access tokens it issues for a resource (RFC 8707, RFC 9068).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseOidcConfig } from '../src/identity/oidc-config.js';
import { createTokenVerifier } from '../src/identity/token-verifier.js';
import { pollenErrorOf } from './support/errors.js';

/** A resource indicator must be an absolute URI (RFC 8707). */
const AUDIENCE = 'urn:pollen:superlink';
let server: Server;
let issuer: string;

beforeAll(async () => {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), kid: 'op-key-1', alg: 'ES256', use: 'sig' };
  server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const provider = new Provider(issuer, {
    jwks: { keys: [jwk] },
    clients: [
      {
        client_id: 'pipeline',
        client_secret: 'a-long-enough-secret-for-tests',
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        id_token_signed_response_alg: 'ES256',
      },
    ],
    features: {
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => AUDIENCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource) => ({
          scope: 'runs',
          audience: resource,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
    extraTokenClaims: () => ({ org: 'hospital-a', realm_access: { roles: ['lead', 'other'] } }),
  });
  server.on('request', provider.callback());
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

async function accessToken(resource: string): Promise<string> {
  const res = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from('pipeline:a-long-enough-secret-for-tests').toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', resource, scope: 'runs' }),
  });
  const body = (await res.json()) as { access_token?: string };
  if (!body.access_token) throw new Error(`no token: ${JSON.stringify(body)}`);
  return body.access_token;
}

describe('tokens from oidc-provider', () => {
  it('verifies its JWT access tokens through its own discovery and keys, and maps the claims', async () => {
    const verifier = createTokenVerifier(
      parseOidcConfig({ issuer, audience: AUDIENCE, 'client-id': 'pollen-cli', algorithms: ['ES256'] }),
    );
    const who = await verifier.verify(await accessToken(AUDIENCE));
    expect(who).toMatchObject({ kind: 'user', subject: 'pipeline', org: 'hospital-a', roles: ['lead'] });
    expect(who.expiresAt).toBeGreaterThan(Date.now());
  });

  it('refuses its token for another resource as for another audience', async () => {
    const verifier = createTokenVerifier(
      parseOidcConfig({ issuer, audience: AUDIENCE, 'client-id': 'pollen-cli' }),
    );
    const e = await pollenErrorOf(verifier.verify(await accessToken('https://other.example.org')));
    expect(e.code).toBe('ACCESS_TOKEN_WRONG_AUDIENCE');
  });
});
