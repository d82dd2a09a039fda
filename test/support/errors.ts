/** Assertions about the errors a call fails with. */
import { ConnectError } from '@connectrpc/connect';
import { PollenError } from '../../src/errors.js';
import { fromConnectError } from '../../src/transport/errors.js';

/** The PollenError `p` rejects with (another error is thrown again); fails the test if it resolves. */
export async function pollenErrorOf(p: Promise<unknown>): Promise<PollenError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof PollenError) return e;
    throw e;
  }
  throw new Error('expected a PollenError');
}

/** The stable code of the PollenError `p` rejects with; fails the test if it resolves. */
export async function pollenCodeOf(p: Promise<unknown>): Promise<string> {
  return (await pollenErrorOf(p)).code;
}

/** The code of the PollenError a synchronous call throws, or 'no error' when it returns. */
export function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof PollenError) return e.code;
    throw e;
  }
  return 'no error';
}

/** `CODE: message` of the PollenError a synchronous call throws, or undefined when it returns. */
export function refusalOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    if (e instanceof PollenError) return `${e.code}: ${e.message}`;
    throw e;
  }
  return undefined;
}

/**
 * 'ok' when `p` resolves, else the code of the PollenError it fails with (a Connect error's
 * carried code, or the code its gRPC status maps to).
 */
export async function outcomeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return fromConnectError(e).code;
  }
}

/** The ConnectError a remote call failed with (fails the test if it succeeded). */
export async function refusal(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (e) {
    return ConnectError.from(e);
  }
  throw new Error('the call was accepted');
}
