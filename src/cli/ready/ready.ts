import { setTimeout as sleep } from 'node:timers/promises';
import { PollenError } from '../../errors.js';
import { type Output, ok } from '../output.js';

export interface ReadyOptions {
  timeout: string;
  /** How often to ask, ms (tests shorten it). */
  intervalMs?: number;
}

/** What the last try found: the component's readiness document, or why it could not be asked. */
type Answer =
  | { ready: true; body: unknown }
  | { ready: false; status?: number; body?: unknown; error?: string };

/** `HOST:PORT` or `http://HOST:PORT[/…]` → the component's /readyz URL. */
export function readyzUrl(address: string): string {
  const base = /^https?:\/\//.test(address) ? address : `http://${address}`;
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    throw new PollenError(
      'INVALID_ARGUMENT',
      `pollen ready takes HOST:PORT of a metrics address (got "${address}")`,
      {
        hint: 'Give the --metrics-address of the component, e.g. 127.0.0.1:9095 (SuperLink), 127.0.0.1:9096 (SuperNode) or 127.0.0.1:9097 (Certificate Service).',
      },
    );
  }
  url.pathname = '/readyz';
  url.search = '';
  return url.toString();
}

async function ask(url: string): Promise<Answer> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    const body: unknown = await res.json().catch(() => undefined);
    return res.status === 200 ? { ready: true, body } : { ready: false, status: res.status, body };
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause?.code;
    return { ready: false, error: cause ?? (e as Error).message };
  }
}

/** `pollen ready [ADDRESS]`: wait until the component's /readyz answers 200, or fail saying why. */
export async function ready(address: string, o: ReadyOptions, out: Output): Promise<void> {
  const seconds = Number(o.timeout);
  if (!Number.isFinite(seconds) || seconds < 0)
    throw new PollenError('INVALID_ARGUMENT', `--timeout takes seconds (>= 0; got "${o.timeout}")`);
  const url = readyzUrl(address);
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const answer = await ask(url);
    if (answer.ready) {
      out.result({ ready: true, url, readiness: answer.body }, (d) => [`${ok('ready')}  ${d.url}`]);
      return;
    }
    if (Date.now() >= deadline) throw notReady(url, answer, seconds);
    await sleep(Math.min(o.intervalMs ?? 250, Math.max(0, deadline - Date.now())));
  }
}

function notReady(url: string, answer: Extract<Answer, { ready: false }>, seconds: number): PollenError {
  if (answer.status === undefined)
    return new PollenError(
      'UNAVAILABLE',
      `Nothing answered at ${url} within ${seconds} s (${answer.error})`,
      {
        hint: 'Check that the component runs and that ADDRESS is its --metrics-address (not an API port, and not `off`).',
        data: { url },
      },
    );
  const body = answer.body as
    | { status?: string; failing?: string; checks?: Record<string, string> }
    | undefined;
  if (answer.status === 503 && body?.status === 'not-ready') {
    const failing = body.failing ?? 'a check';
    return new PollenError(
      'NOT_READY',
      `${url} is not ready after ${seconds} s: ${failing} ${body.checks?.[failing] ?? 'failed'}`,
      { data: { url, readiness: body } },
    );
  }
  return new PollenError(
    'UNEXPECTED_ANSWER',
    `${url} answered HTTP ${answer.status}, not a Pollen readiness document`,
    {
      hint: 'ADDRESS must be the --metrics-address of a Pollen SuperLink, SuperNode or Certificate Service.',
      data: { url, status: answer.status },
    },
  );
}
