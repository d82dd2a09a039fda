/**
 * What a connection's and a federation's name may be: never a path. Apart from connections.ts
 * (zod, TOML) so that reading `[APP_DIR] [FEDERATION]` (app-federation.ts) loads neither at start-up.
 */
export const NAME_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
