import { dim, type Output } from '../output.js';
import { type ServiceOptions, table, withClient } from './admin-client.js';

export interface EnrollmentListOptions extends ServiceOptions {
  /** pending, approved, rejected or all. */
  status: string;
  type?: string;
}

/** `pollen enrollment list`: enrollment requests (pending by default). */
export async function enrollmentList(f: EnrollmentListOptions, out: Output): Promise<void> {
  let requests = await withClient(f, (c) => c.listRequests(f.status));
  if (f.type) requests = requests.filter((r) => r.type === (f.type === 'user' ? 'admin' : f.type));
  out.result({ requests }, (d) =>
    d.requests.length === 0
      ? [`No ${f.status === 'all' ? '' : `${f.status} `}requests.`]
      : [
          f.status === 'pending'
            ? table(
                ['request', 'name', 'type', 'role', 'source ip', 'status', 'rule', 'created'],
                d.requests.map((r) => [
                  r.id,
                  r.name,
                  r.type,
                  r.role,
                  r.sourceIp,
                  r.status,
                  r.rule,
                  r.createdAt,
                ]),
              )
            : // Decided requests: who decided, and why a rejection was made.
              table(
                ['request', 'name', 'type', 'status', 'decided by', 'reason', 'created'],
                d.requests.map((r) => [r.id, r.name, r.type, r.status, r.decidedBy, r.reason, r.createdAt]),
              ),
          f.status === 'pending'
            ? dim('Approve with: pollen enrollment approve NAME (or --pattern "site-*")')
            : '',
        ],
  );
}
