import type { Database } from '../../store/database.js';
import type { LoadedPolicy } from '../policy.js';
import type { EnrollmentEvent, Notifier } from './notifier.js';
import type { EnrollmentSchema } from './schema.js';

/**
 * The policies this service honours (the current one and any earlier ones it was told to accept),
 * and the notifications each asks for.
 */
export class Policies {
  private readonly bySha = new Map<string, LoadedPolicy>();

  private constructor(
    /** The policy new tokens are issued under. */
    readonly current: LoadedPolicy,
    private readonly notifier: Notifier | undefined,
    private readonly now: () => Date,
  ) {}

  /**
   * Record the configured policies in the store and refuse, at start-up, one whose notification
   * channels the notifier cannot deliver to. Only the policies configured for this run are
   * honoured: a policy that is no longer configured (say, the permissive built-in default) cannot
   * be used to bypass a stricter one.
   */
  static async load(
    store: Database<EnrollmentSchema>,
    o: { policy: LoadedPolicy; acceptPolicies?: LoadedPolicy[]; notifier?: Notifier; now: () => Date },
  ): Promise<Policies> {
    const p = new Policies(o.policy, o.notifier, o.now);
    const all = [o.policy, ...(o.acceptPolicies ?? [])];
    for (const policy of all) {
      await store.db
        .insertInto('policies')
        .values({
          sha256: policy.sha256,
          project: policy.policy.metadata.project,
          version: policy.policy.metadata.version,
          text: policy.text,
          source: policy.source,
          created_at: o.now().getTime(),
        })
        .onConflict((oc) => oc.column('sha256').doNothing())
        .execute();
      p.bySha.set(policy.sha256, policy);
    }
    o.notifier?.check(all);
    return p;
  }

  /** The honoured policy with this SHA-256, if any. */
  get(sha256: string): LoadedPolicy | undefined {
    return this.bySha.get(sha256);
  }

  /** Tell the admins of the request's policy, when it asks for notifications (in the background). */
  notify(policySha: string, e: Omit<EnrollmentEvent, 'project' | 'at'>): void {
    const policy = this.bySha.get(policySha);
    if (!policy || !this.notifier || !policy.policy.notifications.enabled) return;
    this.notifier.notify(policy, {
      ...e,
      project: policy.policy.metadata.project,
      at: this.now().toISOString(),
    });
  }

  /** Wait for notifications still being delivered (on shutdown). */
  async drain(): Promise<void> {
    await this.notifier?.drain();
  }
}
