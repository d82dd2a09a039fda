/**
 * A small typed client for the Certificate Service admin API (docs/api.md), over the one HTTP
 * client of the service (`cert-service-http.ts`): it sends the API key as a Bearer token and
 * turns `{error:{code,message,hint}}` answers back into the same PollenError.
 *
 * With `caCert` (the project root) it trusts a server certificate that chains to it, matches the
 * host name and carries the Certificate Service identity; without it, the system roots and the
 * host-name check only, for a service behind a public (WebPKI) certificate.
 */

import { z } from 'zod';
import { checkpointSchema, listedEntrySchema } from '../audit/schemas.js';
import { CertServiceHttp } from './cert-service-http.js';
import type { SubjectType } from './policy.js';
import type { RequestRow } from './service/requests.js';

export interface CertServiceClientOptions {
  /** `https://host:8443` (a path prefix is kept). */
  url: string;
  /**
   * The admin calls' credential, sent as `Authorization: Bearer`: an API key, a person's access
   * token from `pollen login` or a service-account secret (the service tells them apart). The public calls (health,
   * ca) work without it.
   */
  apiKey?: string;
  /** PEM of the root CA(s) to trust; undefined = the system roots. */
  caCert?: string;
  /** Per-request timeout; default 30 s. */
  timeoutMs?: number;
}

export interface IssuedTokenInfo {
  subject: string;
  token: string;
  tokenId: string;
  expiresAt: string;
}

/** An enrollment request as the service's API returns it (the service's own row, on the wire). */
export type EnrollmentRequestInfo = Omit<RequestRow, 'type'> & { type: CertTypeName };

export interface EnrolledInfo {
  name: string;
  type: CertTypeName;
  role: string | null;
  /** The organisation the certificate names (`O=`); null: none. */
  org: string | null;
  serial: string;
  fingerprint: string;
  notAfter: string;
  issuedAt: string;
  approvedBy: string | null;
  revoked: boolean;
  /** Servers and relays: the DNS names and IP addresses the certificate names. */
  hosts: string[];
}

// Requests and certificates carry the certificate type (users enroll as `admin`).
const certType = z.enum(['client', 'server', 'relay', 'admin']);
export type CertTypeName = z.infer<typeof certType>;
const nullableString = z
  .string()
  .nullish()
  .transform((v) => v ?? null);

const tokensResponse = z.object({
  tokens: z.array(
    z.object({ subject: z.string(), token: z.string(), tokenId: z.string(), expiresAt: z.string() }),
  ),
});
const requestsResponse = z.object({
  requests: z.array(
    z.object({
      id: z.string(),
      name: z.string(),
      type: certType,
      role: nullableString,
      org: nullableString,
      sourceIp: nullableString,
      status: z.string(),
      rule: nullableString,
      reason: nullableString.default(null),
      createdAt: z.string(),
      decidedAt: nullableString.default(null),
      decidedBy: nullableString.default(null),
    }),
  ),
});
const decided = z.array(z.object({ id: z.string(), name: z.string(), type: certType }));
/** Requests another admin decided first (they keep that decision). */
const alreadyDecided = z
  .array(
    z.object({
      requestId: z.string(),
      name: z.string(),
      decision: z.enum(['approved', 'rejected']),
      decidedBy: nullableString,
      decidedAt: nullableString,
    }),
  )
  .optional()
  .transform((v) => v ?? []);
const approvedResponse = z.object({ approved: decided, alreadyDecided });
const rejectedResponse = z.object({
  rejected: z.array(z.object({ id: z.string(), name: z.string(), type: certType, reason: z.string() })),
  alreadyDecided,
});
export type DecisionResult = { alreadyDecided: z.infer<typeof alreadyDecided> };
const enrolledResponse = z.object({
  enrolled: z.array(
    z.object({
      name: z.string(),
      type: certType,
      role: nullableString,
      org: nullableString,
      serial: z.string(),
      fingerprint: z.string(),
      notAfter: z.string(),
      issuedAt: z.string(),
      approvedBy: nullableString,
      revoked: z.boolean(),
      hosts: z.array(z.string()).default([]),
    }),
  ),
});
const revokedResponse = z.object({ revoked: z.array(z.object({ name: z.string(), serial: z.string() })) });
const auditResponse = z.object({ entries: z.array(listedEntrySchema) });
const checkpointsResponse = z.object({ checkpoints: z.array(checkpointSchema) });
const serviceAccount = z.object({
  name: z.string(),
  roles: z.array(z.string()),
  org: z.string().nullable(),
  expiresAt: z.number().nullable(),
  createdBy: z.string(),
  createdAt: z.number(),
  revokedAt: z.number().nullable(),
  lastUsedAt: z.number().nullable(),
});
/** A service account as the admin API returns it (times in epoch ms, null for none). */
export type ServiceAccountInfo = z.infer<typeof serviceAccount>;
const accountResponse = z.object({ account: serviceAccount });
const createdAccountResponse = z.object({ account: serviceAccount, secret: z.string() });
const accountsResponse = z.object({ accounts: z.array(serviceAccount) });
const healthResponse = z.object({ status: z.string(), version: z.string(), backend: z.string() }).loose();
const caResponse = z.object({
  root: z.string(),
  intermediate: z.string(),
  chain: z.string(),
  rootFingerprint: z.string(),
});

/** The request bodies the service accepts are at most 64 KiB; token batches are split below that. */
const MAX_BODY_BYTES = 48 * 1024;

/** What an audit reader asks for (every field optional). */
export interface AuditQuery {
  after?: number;
  limit?: number;
  since?: Date;
  actor?: string;
  federation?: string;
  /** Entries the caller may not see come as digests (to check the whole chain). */
  redacted?: boolean;
}

export class CertServiceClient {
  private readonly http: CertServiceHttp;

  constructor(opts: CertServiceClientOptions) {
    this.http = new CertServiceHttp({
      url: opts.url,
      trust:
        opts.caCert === undefined
          ? { system: true }
          : { project: opts.caCert, label: 'the root CA you trust' },
      ...(opts.apiKey !== undefined && { apiKey: opts.apiKey }),
      ...(opts.timeoutMs !== undefined && { timeoutMs: opts.timeoutMs }),
      tlsHint:
        'Trust the project root CA with --ca-cert FILE (or POLLEN_CA_CERT), and check the URL host name.',
    });
  }

  /** Release the connections (call when done, so the process can exit). */
  async close(): Promise<void> {
    await this.http.close();
  }

  health() {
    return this.http.json('GET', '/v1/health', healthResponse);
  }

  ca() {
    return this.http.json('GET', '/v1/ca', caResponse);
  }

  /** `POST /v1/tokens`: one request (keep it under 64 KiB; see `createTokensInChunks`). */
  async createTokens(req: {
    subjects: string[];
    type: SubjectType;
    role?: string;
    hosts?: readonly string[];
    org?: string;
  }): Promise<IssuedTokenInfo[]> {
    const body = {
      subjects: req.subjects,
      type: req.type,
      ...(req.role !== undefined && { role: req.role }),
      ...(req.hosts?.length && { hosts: req.hosts }),
      ...(req.org !== undefined && { org: req.org }),
    };
    return (await this.http.json('POST', '/v1/tokens', tokensResponse, { body, admin: true })).tokens;
  }

  /** Issue tokens for any number of subjects, in requests that stay under the body limit. */
  async createTokensInChunks(
    req: {
      subjects: readonly string[];
      type: SubjectType;
      role?: string;
      hosts?: readonly string[];
      org?: string;
    },
    onProgress?: (done: number, total: number) => void,
  ): Promise<IssuedTokenInfo[]> {
    const out: IssuedTokenInfo[] = [];
    let chunk: string[] = [];
    let size = 128;
    const flush = async () => {
      if (chunk.length === 0) return;
      out.push(
        ...(await this.createTokens({
          subjects: chunk,
          type: req.type,
          ...(req.role !== undefined && { role: req.role }),
          ...(req.hosts && { hosts: req.hosts }),
          ...(req.org !== undefined && { org: req.org }),
        })),
      );
      onProgress?.(out.length, req.subjects.length);
      chunk = [];
      size = 128;
    };
    for (const s of req.subjects) {
      const bytes = Buffer.byteLength(JSON.stringify(s)) + 1;
      if (size + bytes > MAX_BODY_BYTES || chunk.length >= 1000) await flush();
      chunk.push(s);
      size += bytes;
    }
    await flush();
    return out;
  }

  async listRequests(status?: string): Promise<EnrollmentRequestInfo[]> {
    const q = status ? `?status=${encodeURIComponent(status)}` : '';
    return (await this.http.json('GET', `/v1/requests${q}`, requestsResponse, { admin: true })).requests;
  }

  async approve(req: { names?: string[]; pattern?: string; type?: SubjectType | CertTypeName }) {
    return this.http.json('POST', '/v1/requests/approve', approvedResponse, { body: req, admin: true });
  }

  async reject(req: {
    names?: string[];
    pattern?: string;
    type?: SubjectType | CertTypeName;
    /** Shown to the site; the service records its default when left out. */
    reason?: string;
  }) {
    return this.http.json('POST', '/v1/requests/reject', rejectedResponse, { body: req, admin: true });
  }

  async enrolled(type?: SubjectType | CertTypeName): Promise<EnrolledInfo[]> {
    const q = type ? `?type=${encodeURIComponent(type)}` : '';
    return (await this.http.json('GET', `/v1/enrolled${q}`, enrolledResponse, { admin: true })).enrolled;
  }

  /** Audit entries matching `q`, oldest first (at most `limit`; see AuditQuery). */
  async audit(q: AuditQuery = {}) {
    const params = new URLSearchParams({ after: String(q.after ?? 0), limit: String(q.limit ?? 1000) });
    if (q.since) params.set('since', q.since.toISOString());
    if (q.actor) params.set('actor', q.actor);
    if (q.federation) params.set('federation', q.federation);
    if (q.redacted) params.set('redacted', 'true');
    return (await this.http.json('GET', `/v1/audit?${params}`, auditResponse, { admin: true })).entries;
  }

  /** The signed checkpoints of the audit trail after sequence number `after`, oldest first. */
  async auditCheckpoints(after = 0, limit = 1000) {
    return (
      await this.http.json(
        'GET',
        `/v1/audit/checkpoints?after=${after}&limit=${limit}`,
        checkpointsResponse,
        {
          admin: true,
        },
      )
    ).checkpoints;
  }

  async revoke(req: { names?: string[]; serials?: string[]; reason?: string }) {
    return (await this.http.json('POST', '/v1/revoke', revokedResponse, { body: req, admin: true })).revoked;
  }

  /** A service account of the Certificate Service; its secret is in the answer, and never again. */
  async createServiceAccount(req: { name: string; roles: string[]; org?: string; expiresAt?: number }) {
    return this.http.json('POST', '/v1/service-accounts', createdAccountResponse, { body: req, admin: true });
  }

  async listServiceAccounts(): Promise<ServiceAccountInfo[]> {
    return (await this.http.json('GET', '/v1/service-accounts', accountsResponse, { admin: true })).accounts;
  }

  async revokeServiceAccount(name: string): Promise<ServiceAccountInfo> {
    return (
      await this.http.json('POST', '/v1/service-accounts/revoke', accountResponse, {
        body: { name },
        admin: true,
      })
    ).account;
  }
}
