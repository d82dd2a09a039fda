/** What `enrollment approve` and `enrollment reject` share: choose requests, decide, report. */
import type { CertServiceClient, DecisionResult } from '../../enrollment/cert-service-client.js';
import { PollenError } from '../../errors.js';
import { bold, dim, type Output } from '../output.js';
import { type ServiceOptions, withClient } from './admin-client.js';

/** Which pending requests: by name or request id, or by --pattern; --type narrows either. */
export interface RequestChoice extends ServiceOptions {
  names: string[];
  pattern?: string;
  type?: string;
}

interface Decided {
  id: string;
  name: string;
  type: string;
}

/** Decide the chosen requests with `send`; `decided` picks what this call decided from the answer. */
export async function decide<R extends DecisionResult>(
  o: RequestChoice,
  out: Output,
  verb: 'approve' | 'reject',
  send: (c: CertServiceClient, chosen: { names?: string[]; pattern?: string; type: never }) => Promise<R>,
  decided: (r: R) => Decided[],
): Promise<void> {
  if (o.names.length === 0 && !o.pattern)
    throw new PollenError('USAGE', `Say what to ${verb}: names, request ids or --pattern GLOB`);
  const result = await withClient(o, (c) =>
    send(c, { names: o.names.length ? o.names : undefined, pattern: o.pattern, type: o.type as never }),
  );
  const done = verb === 'approve' ? 'approved' : 'rejected';
  out.result(result, (d) => [
    ...(decided(d).length === 0 && d.alreadyDecided.length === 0
      ? [`Nothing matched: no pending request was ${done}.`]
      : decided(d).map((r) => `${bold(done)} ${r.type} ${r.name} ${dim(`(${r.id})`)}`)),
    // Requests another admin decided first keep that decision; say whose it was.
    ...d.alreadyDecided.map(
      (r) =>
        `${dim('already')} ${r.decision} ${r.name} ${dim(`(${r.requestId}${r.decidedBy ? `, by ${r.decidedBy}` : ''})`)}`,
    ),
  ]);
}
