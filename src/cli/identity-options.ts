/**
 * What `pollen superlink` and `pollen cert-service serve` take about people: the identity
 * provider whose access tokens they accept (the `[identity.oidc]` section of a TOML file) and the
 * access policy (roles × rights), both checked when the service starts
 * (identity/service-identity.ts).
 */
import { type Command, Option } from 'commander';

export interface IdentityFlags {
  identityConfig?: string;
  accessPolicy?: string;
}

export function addIdentityOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option(
        '--identity-config <file>',
        'TOML file whose [identity.oidc] section names the identity provider whose login tokens are accepted (docs/identity.md)',
      ).env('POLLEN_IDENTITY_CONFIG'),
    )
    .addOption(
      new Option(
        '--access-policy <file>',
        'roles × rights YAML replacing the default access policy (docs/identity.md)',
      ).env('POLLEN_ACCESS_POLICY'),
    );
}
