import { randomBytes } from 'node:crypto';
import { PollenError } from '../../errors.js';

/** What a client is told about a failure; `reference` ties an unexpected one to its log line. */
export interface PublicFailure {
  error: PollenError;
  /** Set for an unexpected failure: its short correlation id, in the answer and in the log. */
  reference?: string;
}

const CONNECTION_ERRORS = new Set(['ECONNREFUSED', 'ENOTFOUND', 'ECONNRESET']);

/**
 * The public form of anything a route throws. A PollenError is public by design (code, message,
 * hint and data; its detail and cause stay here); a refusal of Fastify's body parser gets the
 * matching code; anything else (a bug, a store that fails, an OS error that names a file) becomes
 * a bare INTERNAL (or UNAVAILABLE when the store cannot be reached) whose message carries only a
 * short reference: the full error goes to the server log under the same reference.
 */
export function publicFailure(err: unknown, maxBodyBytes: number): PublicFailure {
  if (err instanceof PollenError && err.code !== 'INTERNAL') return { error: err };
  const code = (err as { code?: unknown })?.code;
  const text = typeof code === 'string' ? code : '';
  if (text === 'FST_ERR_CTP_BODY_TOO_LARGE')
    return {
      error: new PollenError('PAYLOAD_TOO_LARGE', `The request body is larger than ${maxBodyBytes} bytes`),
    };
  if (text === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
    return {
      error: new PollenError(
        'INVALID_REQUEST',
        'The request body must be JSON (Content-Type: application/json)',
      ),
    };
  if (text.startsWith('FST_ERR') && ((err as { statusCode?: number }).statusCode ?? 500) < 500)
    return { error: new PollenError('INVALID_REQUEST', 'The request body is not valid JSON') };
  const reference = randomBytes(5).toString('hex');
  if (CONNECTION_ERRORS.has(text))
    return {
      reference,
      error: new PollenError(
        'UNAVAILABLE',
        `The Certificate Service cannot reach its store (reference ${reference})`,
      ),
    };
  return { reference, error: new PollenError('INTERNAL', `Internal error (reference ${reference})`) };
}
