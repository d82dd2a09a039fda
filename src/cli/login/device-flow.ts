/**
 * The OAuth 2.0 device authorization grant (RFC 8628): ask the provider for a user code, let the
 * person sign in elsewhere, poll the token endpoint at the interval the provider sets (5 s by
 * default, 5 s more on each `slow_down`) until they have, refused, or the code expired.
 */
import * as oidc from 'openid-client';
import { PollenError } from '../../errors.js';
import { loginClock } from './clock.js';
import { type LoginDetails, oauthError, providerFailure } from './issuer.js';

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

export interface DevicePrompt {
  verificationUri: string;
  /** The URL with the code in it (scan the QR code, nothing to type), where the provider gives one. */
  verificationUriComplete?: string;
  userCode: string;
  /** Epoch ms when the code expires. */
  expiresAt: number;
}

export interface DeviceFlowEvents {
  /** Show the person where to go and what to type. */
  prompt(p: DevicePrompt): void;
  /** Before each poll: how long the code has left, and the interval in force. */
  polling(p: { msLeft: number; intervalMs: number; slowDowns: number }): void;
}

/** Run the grant to its end; resolves with the provider's token response. */
export async function deviceFlow(
  config: oidc.Configuration,
  details: LoginDetails,
  events: DeviceFlowEvents,
): Promise<oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers> {
  const clock = loginClock;
  let started: oidc.DeviceAuthorizationResponse;
  try {
    started = await oidc.initiateDeviceAuthorization(config, {
      scope: details.scopes.join(' '),
      resource: details.audience,
    });
  } catch (e) {
    throw providerFailure(e, details.issuer);
  }
  const expiresAt = clock.now() + started.expires_in * 1000;
  events.prompt({
    verificationUri: started.verification_uri,
    verificationUriComplete: started.verification_uri_complete,
    userCode: started.user_code,
    expiresAt,
  });
  let intervalMs = (started.interval ?? 5) * 1000;
  let slowDowns = 0;
  for (;;) {
    events.polling({ msLeft: expiresAt - clock.now(), intervalMs, slowDowns });
    await clock.sleep(intervalMs);
    if (clock.now() >= expiresAt) throw expired(details.issuer);
    try {
      return await oidc.genericGrantRequest(config, DEVICE_GRANT, { device_code: started.device_code });
    } catch (e) {
      switch (oauthError(e)) {
        case 'authorization_pending':
          continue;
        case 'slow_down':
          // RFC 8628 §3.5: this and every later poll waits 5 s longer.
          intervalMs += 5_000;
          slowDowns++;
          continue;
        case 'access_denied':
          throw new PollenError('LOGIN_DENIED', `The sign-in at ${details.issuer} was refused`, { cause: e });
        case 'expired_token':
          throw expired(details.issuer);
        default:
          throw providerFailure(e, details.issuer);
      }
    }
  }
}

function expired(issuer: string): PollenError {
  return new PollenError('LOGIN_EXPIRED', `The sign-in code of ${issuer} expired before it was used`);
}
