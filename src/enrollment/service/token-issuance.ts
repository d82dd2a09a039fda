import { type AuditActor, change } from '../../audit/entry.js';
import type { SubjectType } from '../policy.js';
import { issueTokens, type TokenSigner } from '../token.js';
import type { ServiceContext } from './context.js';

/** Enrollment tokens issued through the admin API, under the current policy, audited. */
export class TokenIssuance {
  constructor(
    private readonly c: ServiceContext,
    private signer: TokenSigner,
  ) {}

  /** Sign new tokens with this key from now on (a token key rotation). */
  useSigner(signer: TokenSigner): void {
    this.signer = signer;
  }

  async issue(
    input: { subjects: string[]; type: SubjectType; role?: string; hosts?: string[]; org?: string },
    actor: AuditActor,
  ) {
    const tokens = await issueTokens(this.signer, input.subjects, {
      type: input.type,
      role: input.role,
      ...(input.hosts && { hosts: input.hosts }),
      ...(input.org !== undefined && { org: input.org }),
      policy: this.c.policies.current,
      now: this.c.now(),
    });
    const now = this.c.now();
    await this.c.batcher.run((tx) =>
      this.c.audit.append(
        tx,
        change(
          actor,
          'tokens.issued',
          tokens.length === 1 ? tokens[0]!.claims.sub : `${tokens.length} subjects`,
          now,
          {
            count: tokens.length,
            type: input.type,
            ...(input.org !== undefined && { org: input.org }),
            ...(input.hosts?.length && { hosts: tokens[0]!.claims.pollen.hosts }),
            subjects: tokens.slice(0, 100).map((t) => t.claims.sub),
            tokenIds: tokens.slice(0, 100).map((t) => t.claims.jti),
          },
        ),
      ),
    );
    return {
      tokens: tokens.map((t) => ({
        subject: t.claims.sub,
        token: t.token,
        tokenId: t.claims.jti,
        subjectType: t.claims.pollen.subject_type,
        expiresAt: new Date(t.claims.exp * 1000).toISOString(),
      })),
    };
  }
}
