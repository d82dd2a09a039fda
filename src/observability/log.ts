/**
 * The one way a long-running command builds its logger: pino, JSON lines or pino-pretty, on
 * stderr, with the secret fields redacted as a second line of defence (code never means to log a
 * secret in the first place; test/secrets-never-logged checks whole runs).
 */
import { type DestinationStream, type Logger, pino } from 'pino';
import pretty from 'pino-pretty';
import { PollenError } from '../errors.js';
import { logContext } from '../util/log-context.js';

export type LogFormat = 'json' | 'pretty';
export const LOG_FORMATS: readonly LogFormat[] = ['json', 'pretty'];
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Field names that hold a secret wherever they appear (top level or one object down). */
const SECRET_FIELDS = [
  'token',
  'enrollmentToken',
  'accessToken',
  'access_token',
  'refreshToken',
  'refresh_token',
  'idToken',
  'id_token',
  'apiKey',
  'api_key',
  'secret',
  'clientSecret',
  'client_secret',
  'password',
  'passphrase',
  'privateKey',
  'key',
  'authorization',
  'cookie',
];

/** pino `redact` paths: each secret field at the top level, one level down, and in headers. */
export const REDACT_PATHS: readonly string[] = [
  ...SECRET_FIELDS,
  ...SECRET_FIELDS.map((f) => `*.${f}`),
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'headers.authorization',
];

export interface LogOptions {
  /** fatal … trace, or silent. */
  level: string;
  /** json or pretty; absent: pretty on a terminal, json otherwise. */
  format?: string;
  /** Where lines go (stderr when absent); a test passes a stream. */
  destination?: DestinationStream;
  /** Whether the destination is a terminal (default: stderr's isTTY). */
  tty?: boolean;
  /** Bindings on every line (nodeId, runId, …). */
  bindings?: Record<string, unknown>;
}

/** The format a command logs in: the flag when given, else pretty on a terminal and json otherwise. */
export function resolveLogFormat(format: string | undefined, tty: boolean): LogFormat {
  if (format === undefined || format === '') return tty ? 'pretty' : 'json';
  if ((LOG_FORMATS as readonly string[]).includes(format)) return format as LogFormat;
  throw new PollenError('INVALID_ARGUMENT', `--log-format takes json or pretty (got "${format}")`, {
    hint: 'Use --log-format json for log collectors (journald, Loki, Elasticsearch), pretty for a terminal; POLLEN_LOG_FORMAT sets it too.',
  });
}

function checkLevel(level: string): void {
  if (!(LOG_LEVELS as readonly string[]).includes(level))
    throw new PollenError('INVALID_ARGUMENT', `--log-level takes ${LOG_LEVELS.join(', ')} (got "${level}")`, {
      hint: 'info is the default; debug adds connection and session details; POLLEN_LOG_LEVEL sets it too.',
    });
}

/** The logger of a long-running command (superlink, supernode, cert-service, start). */
export function createLogger(o: LogOptions): Logger {
  checkLevel(o.level);
  const tty = o.tty ?? process.stderr.isTTY === true;
  const format = resolveLogFormat(o.format, tty);
  const options = {
    level: o.level,
    redact: { paths: [...REDACT_PATHS], censor: '[redacted]' },
    // The request id (and what else a request's scope binds) on every line written for it.
    mixin: logContext,
    ...(o.bindings && { base: { pid: process.pid, ...o.bindings } }),
  };
  // pino-pretty as a synchronous stream, not a transport: no worker thread, and lines written
  // just before a process exits are not lost.
  const destination =
    format === 'pretty'
      ? pretty({
          destination: o.destination ?? 2,
          sync: true,
          colorize: tty,
          translateTime: 'SYS:standard',
          ignore: 'pid,hostname',
        })
      : (o.destination ?? pino.destination(2));
  return pino(options, destination);
}
