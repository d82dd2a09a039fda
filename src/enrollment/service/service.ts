import { sql } from 'kysely';
import type { CheckpointSigner } from '../../audit/checkpoint.js';
import { AuditTrail, type AuditTrailOptions } from '../../audit/trail.js';
import { PollenError } from '../../errors.js';
import type { TokenVerifier } from '../../identity/identity.js';
import { type AccessPolicy, authorize, DEFAULT_ACCESS_POLICY } from '../../identity/rights.js';
import { ServiceAccountAdmin } from '../../identity/service-account-admin.js';
import { ServiceAccounts } from '../../identity/service-accounts.js';
import type { LoadedCa } from '../../pki/ca.js';
import { WriteBatcher } from '../../store/batcher.js';
import type { Database } from '../../store/database.js';
import type { LoadedPolicy } from '../policy.js';
import type { TokenSigner } from '../token.js';
import { AdminAuth } from './admin-auth.js';
import { ApiKeys } from './api-keys.js';
import { Certificates } from './certificates.js';
import { DAY, type ServiceContext } from './context.js';
import { Enrollment } from './enrollment.js';
import { CertificateIssuer } from './issuer.js';
import type { Notifier } from './notifier.js';
import { Policies } from './policies.js';
import { Renewal } from './renewal.js';
import { Requests } from './requests.js';
import type { EnrollmentSchema } from './schema.js';
import { CertServiceAccounts } from './service-accounts.js';
import { type TidyResult, tidy } from './tidy.js';
import { TokenIssuance } from './token-issuance.js';

export interface CertificateServiceOptions {
  ca: LoadedCa;
  store: Database<EnrollmentSchema>;
  /** Signs tokens issued through the API and verifies the tokens sites enroll with. */
  tokenSigner: TokenSigner;
  /** The policy new tokens are issued under. */
  policy: LoadedPolicy;
  /** Earlier policies whose outstanding tokens are still honoured (none by default). */
  acceptPolicies?: LoadedPolicy[];
  /** SHA-256 (hex) of each admin API key; the keys themselves are never stored. */
  apiKeyHashes: string[];
  /** Validity of certificates issued to sites (default 30 days; renewal at two thirds). */
  siteValidityMs?: number;
  /** How far a poll timestamp may be from our clock. */
  proofWindowMs?: number;
  /** Delivers the notifications a policy asks for. */
  notifier?: Notifier;
  /** OIDC access tokens accepted on the admin API besides the API keys (identity/token-verifier.ts). */
  tokens?: TokenVerifier;
  /** Roles × rights for admin calls; default DEFAULT_ACCESS_POLICY. */
  accessPolicy?: AccessPolicy;
  now?: () => Date;
  /** Signs the audit trail's checkpoints: the service's TLS key and certificate. */
  auditSigner?: CheckpointSigner;
  /** How often checkpoints are written, and how refusals are limited (trail.ts). */
  audit?: Pick<AuditTrailOptions, 'checkpointEveryMs' | 'checkpointEveryEntries' | 'refusals'>;
}

/**
 * The Certificate Service's behaviour, independent of HTTP: one facade over parts with one job
 * each, sharing the store, its write batcher, the audit log, the policies and one clock.
 */
export class CertificateService {
  private constructor(
    private readonly c: ServiceContext,
    /** Admin authentication (API keys, login tokens) and rights. */
    readonly admin: AdminAuth,
    /** Enroll with a token, poll a pending request. */
    readonly enrollment: Enrollment,
    /** Renew over mutual TLS. */
    readonly renewal: Renewal,
    /** Tokens issued through the admin API. */
    readonly tokens: TokenIssuance,
    /** Pending requests: list, approve, reject. */
    readonly requests: Requests,
    /** Issued certificates: list, revoke, CRL. */
    readonly certificates: Certificates,
    /** The admin API's service accounts: create, list, revoke. */
    readonly serviceAccounts: CertServiceAccounts,
  ) {}

  static async create(o: CertificateServiceOptions): Promise<CertificateService> {
    const now = o.now ?? (() => new Date());
    const policies = await Policies.load(o.store, { ...o, now });
    const apiKeys = await ApiKeys.load(o.store, o.apiKeyHashes);
    if (apiKeys.count === 0)
      throw new PollenError('API_KEY_REQUIRED', 'The Certificate Service needs at least one admin API key', {
        hint: 'Make one with `pollen cert api-key -o api_key.txt` and pass --api-key-file api_key.txt.',
      });
    const c: ServiceContext = {
      ca: o.ca,
      store: o.store,
      batcher: new WriteBatcher(o.store.db),
      audit: new AuditTrail({
        store: o.store,
        ...o.audit,
        ...(o.auditSigner && { signer: o.auditSigner }),
        now,
      }),
      policies,
      now,
    };
    const issuer = new CertificateIssuer(o.ca, o.store, o.siteValidityMs ?? 30 * DAY);
    const accessPolicy = o.accessPolicy ?? DEFAULT_ACCESS_POLICY;
    // Workers share the store: every lookup reads it, so a revocation holds in each at once.
    const accounts = ServiceAccounts.in(o.store.db, () => now().getTime(), true);
    const admin = new AdminAuth(apiKeys, accessPolicy, {
      ...(o.tokens && { tokens: o.tokens }),
      serviceAccounts: accounts,
    });
    return new CertificateService(
      c,
      admin,
      new Enrollment(c, issuer, o.tokenSigner, o.proofWindowMs ?? 5 * 60_000),
      new Renewal(c, issuer),
      new TokenIssuance(c, o.tokenSigner),
      new Requests(c, issuer),
      new Certificates(c),
      new CertServiceAccounts(
        c,
        new ServiceAccountAdmin(accounts, accessPolicy, (who, right, target) =>
          authorize(accessPolicy, who, right, target),
        ),
      ),
    );
  }

  get ca(): LoadedCa {
    return this.c.ca;
  }

  get backend(): string {
    return this.c.store.backend;
  }

  /** The hash-chained audit trail. */
  get audit(): AuditTrail {
    return this.c.audit;
  }

  caInfo() {
    const { ca } = this.c;
    return {
      root: ca.rootPem,
      intermediate: ca.intermediatePem,
      chain: ca.chainPem,
      rootFingerprint: ca.rootFingerprint,
    };
  }

  /** Answers when the store does (readiness). */
  async ping(): Promise<void> {
    await sql`select 1`.execute(this.c.store.db);
  }

  /** Keep storage bounded (see `tidy.ts`); run on a timer by the server. */
  tidy(retainMs?: number): Promise<TidyResult> {
    return tidy(this.c.store, this.c.now(), retainMs);
  }

  /** Wait for notifications still being delivered (on shutdown). */
  async drain(): Promise<void> {
    await this.c.policies.drain();
    await this.c.audit.close();
  }
}
