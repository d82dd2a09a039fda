/**
 * The shell commands the Kubernetes pods run (`/bin/sh -c SCRIPT`). Paths and endpoints come from
 * the container's environment, never from the script text, so one script serves every
 * organisation and a test can run it as a local process with folders in place of the volumes.
 *
 * A SuperNode pod takes its enrollment token by its ordinal: pod ORG-N (a StatefulSet whose
 * ordinals start at 1) enrolls as site ORG-N with the token file ORG-N.token, which
 * `pollen token batch -n COUNT --prefix ORG` makes, so replica N always uses token N.
 */

/** The variables the scripts read, set in the container's `env`. */
export const SCRIPT_ENV = {
  /** The startup kit, on the pod's persistent volume (state and renewed certificates live there). */
  kit: 'KIT',
  /** The folder the token Secret is mounted at (read-only). */
  tokens: 'TOKENS',
  /** The organisation: the StatefulSet's name and the tokens' prefix. */
  org: 'ORG',
  /** The Secret the tokens come from, named in the error when one is missing. */
  tokenSecret: 'TOKEN_SECRET',
  /** `grpcs://HOST:PORT` of the Fleet API, as the SuperNode dials it. */
  fleetEndpoint: 'FLEET_ENDPOINT',
  /** SuperLink: the name (or address) its certificate names, which sites dial. */
  superlinkHost: 'SUPERLINK_HOST',
  /** SuperLink: the server kit's listening endpoint, `grpcs://0.0.0.0:FLEET:CONTROL`. */
  listenEndpoint: 'LISTEN_ENDPOINT',
} as const;

const E = SCRIPT_ENV;

/**
 * The SuperNode's init container: pick the token by the pod's ordinal, make the kit once (it stays
 * on the volume across restarts, so the single-use token is needed only the first time), enroll.
 * A missing token stops the pod with TOKEN_MISSING and says how to make one.
 */
export function supernodeEnrollScript(): string {
  return `set -eu
# The pod's ordinal picks its token: pod $${E.org}-N enrolls as site $${E.org}-N with token N.
ORDINAL="\${HOSTNAME##*-}"
case "$ORDINAL" in
  '' | *[!0-9]*)
    echo "error[INVALID_ARGUMENT]: the host name $HOSTNAME does not end in a StatefulSet ordinal" >&2
    echo "  hint: run this container in a StatefulSet pod (its host name is NAME-ORDINAL)." >&2
    exit 2 ;;
esac
SITE="$${E.org}-$ORDINAL"
if [ ! -f "$${E.kit}/startup/fed_client.json" ]; then
  TOKEN="$${E.tokens}/$SITE.token"
  if [ ! -f "$TOKEN" ]; then
    echo "error[TOKEN_MISSING]: no enrollment token for $SITE: the Secret $${E.tokenSecret} has no key $SITE.token" >&2
    echo "  hint: the Secret holds one token per replica: make them with pollen token batch -n COUNT --prefix $${E.org} --org $${E.org} -o tokens/ (COUNT at least $ORDINAL), replace the Secret, or scale the StatefulSet down." >&2
    exit 5
  fi
  pollen package -n "$SITE" --org "$${E.org}" -e "$${E.fleetEndpoint}" --token "$TOKEN" -o "$${E.kit}" --force
fi
exec pollen start "$${E.kit}" --enroll-only
`;
}

/**
 * The SuperLink's init container: make the server kit once from the token in its Secret, naming
 * the host sites dial, then enroll (or renew).
 */
export function superlinkEnrollScript(): string {
  return `set -eu
if [ ! -f "$${E.kit}/startup/fed_server.json" ]; then
  pollen package -n superlink -t server -e "$${E.listenEndpoint}" --host "$${E.superlinkHost}" --token "$${E.tokens}/token" -o "$${E.kit}" --force
fi
exec pollen start "$${E.kit}" --enroll-only
`;
}

/** The main container of the SuperLink and of each SuperNode: renew when due, then run. */
export function startScript(): string {
  return `set -eu
exec pollen start "$${E.kit}"
`;
}
