import type { MessageInitShape } from '@bufbuild/protobuf';
import type { GetLoginDetailsResponseSchema } from '../gen/pollen/v1/control_pb.js';
import type { OidcConfig } from '../identity/identity.js';

/**
 * The answer to `GetLoginDetails` (unauthenticated: a person who is not logged in asks it, as
 * Flower's login does): where to log in for this SuperLink. Empty without an OpenID Provider.
 */
export function loginDetails(config?: OidcConfig): MessageInitShape<typeof GetLoginDetailsResponseSchema> {
  if (!config) return {};
  return {
    issuer: config.issuer,
    clientId: config.clientId,
    audience: config.audience,
    scopes: config.scopes,
  };
}
