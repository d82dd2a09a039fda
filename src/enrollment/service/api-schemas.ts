/**
 * The requests the Certificate Service accepts, as zod schemas checked at the HTTP edge. Each
 * field has the refusal a bad value gets (its code and a message that names the field); the
 * service behind the edge receives typed values only.
 */
import { z } from 'zod';
import { type ErrorCode, PollenError } from '../../errors.js';

interface Refusal {
  message: string;
  /** Default INVALID_REQUEST. */
  code?: ErrorCode;
}

type Output<S extends z.ZodRawShape> = z.output<z.ZodObject<S>>;

const isObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

const refuse = (r: Refusal) => new PollenError(r.code ?? 'INVALID_REQUEST', r.message);

/**
 * A JSON body (or a query string) made of named fields. `refusals` lists the fields in the order
 * their refusals take precedence: a request with several faults is refused for the first one.
 * A body may hold only the fields of `shape` (a request can never smuggle in a type, role or
 * name); a query string's other parameters are ignored.
 */
export class RequestSchema<S extends z.ZodRawShape> {
  private readonly object: z.ZodObject<S>;

  constructor(
    private readonly shape: S,
    private readonly refusals: { [K in keyof S]: Refusal },
    private readonly o: {
      kind: 'body' | 'query';
      /** A rule across fields, checked after each field passed. */
      refine?: { check: (v: Output<S>) => boolean; message: string };
    },
  ) {
    this.object = z.object(shape);
  }

  /** The request as an object of known fields, before any field is checked. */
  envelope(input: unknown): Record<string, unknown> {
    if (!isObject(input)) throw new PollenError('INVALID_REQUEST', 'The request body must be a JSON object');
    if (this.o.kind === 'body') {
      const allowed = Object.keys(this.shape);
      const extra = Object.keys(input).filter((k) => !allowed.includes(k));
      if (extra.length)
        throw new PollenError(
          'INVALID_REQUEST',
          `Unknown field${extra.length > 1 ? 's' : ''}: ${extra.join(', ')}`,
          { hint: `This call accepts: ${allowed.join(', ')}.` },
        );
    }
    return input;
  }

  /** One field of an envelope, checked: for a call that authenticates before it reads the rest. */
  field<K extends keyof S & string>(envelope: Record<string, unknown>, key: K): z.output<S[K]> {
    const r = (this.shape[key] as z.ZodType).safeParse(envelope[key]);
    if (!r.success) throw refuse(this.refusals[key]);
    return r.data as z.output<S[K]>;
  }

  /** The whole request, checked. */
  parse(input: unknown): Output<S> {
    const r = this.object.safeParse(this.envelope(input));
    if (!r.success) {
      const bad = new Set(r.error.issues.map((i) => i.path[0]));
      const first = (Object.keys(this.refusals) as (keyof S)[]).find((k) => bad.has(k as string));
      throw refuse(first === undefined ? { message: 'The request is malformed' } : this.refusals[first]);
    }
    if (this.o.refine && !this.o.refine.check(r.data)) throw refuse(this.o.refine);
    return r.data;
  }
}

const strings = z.array(z.string());

export const enrollBody = new RequestSchema(
  // The token is read with `field` and verified before the CSR is looked at.
  { token: z.string().max(8192), csr: z.string().min(1) },
  {
    token: { code: 'TOKEN_INVALID', message: 'The enrollment token is invalid' },
    csr: { code: 'CSR_INVALID', message: 'The CSR is missing or not a string' },
  },
  { kind: 'body' },
);

/** A malformed proof is refused like a wrong one: unknown ids and bad proofs look alike. */
const badProof = { code: 'PROOF_INVALID', message: 'The proof of possession is not valid' } as const;
export const pollBody = new RequestSchema(
  { timestamp: z.number(), signature: z.string().max(2048) },
  { timestamp: badProof, signature: badProof },
  { kind: 'body' },
);

export const renewBody = new RequestSchema(
  // Read with `field` once the client certificate was checked.
  { csr: z.string().min(1) },
  { csr: { code: 'CSR_INVALID', message: 'The CSR is missing or not a string' } },
  { kind: 'body' },
);

export const tokensBody = new RequestSchema(
  {
    subjects: strings.min(1).max(10_000),
    type: z
      .enum(['client', 'server', 'relay', 'user'])
      .nullish()
      .transform((t) => t ?? 'client'),
    role: z.string().optional(),
    hosts: strings.max(32).optional(),
    org: z.string().optional(),
  },
  {
    subjects: { message: '`subjects` must be a list of 1 to 10000 names' },
    type: { message: '`type` must be client, server, relay or user' },
    role: { message: '`role` must be a string' },
    hosts: { message: '`hosts` must be a list of at most 32 DNS names or IP addresses' },
    org: { message: '`org` must be a string' },
  },
  { kind: 'body' },
);

const selection = {
  names: strings.optional().transform((n) => n ?? []),
  pattern: z.string().optional(),
  type: z.string().optional(),
};
const selectionRefusals = {
  names: { message: '`names` must be a list of names or request ids' },
  pattern: { message: '`pattern` must be a string' },
  type: { message: '`type` must be a string' },
};
const selectionGiven = {
  check: (s: { names: string[]; pattern?: string }) => s.names.length > 0 || !!s.pattern,
  message: 'Give names (or request ids) or a pattern',
};

export const approveBody = new RequestSchema(selection, selectionRefusals, {
  kind: 'body',
  refine: selectionGiven,
});

export const rejectBody = new RequestSchema(
  { ...selection, reason: z.string().max(1000).optional() },
  { reason: { message: '`reason` must be a string of at most 1000 characters' }, ...selectionRefusals },
  { kind: 'body', refine: selectionGiven },
);

export const revokeBody = new RequestSchema(
  {
    names: strings.optional().transform((n) => n ?? []),
    serials: strings.optional().transform((s) => s ?? []),
    reason: z.string().max(200).optional(),
  },
  {
    names: { message: '`names` and `serials` must be lists of strings' },
    serials: { message: '`names` and `serials` must be lists of strings' },
    reason: { message: '`reason` must be a string of at most 200 characters' },
  },
  {
    kind: 'body',
    refine: {
      check: (s) => s.names.length + s.serials.length > 0,
      message: 'Give names or serials to revoke',
    },
  },
);

const auditRange = { message: '`after` must be a sequence number and `limit` 1-10000' };
export const auditQuery = new RequestSchema(
  {
    after: z.coerce.number().int().min(0).default(0),
    limit: z.coerce.number().int().min(1).max(10_000).default(1000),
    since: z.coerce.date().optional(),
    actor: z.string().min(1).max(256).optional(),
    federation: z.string().min(1).max(256).optional(),
    redacted: z
      .enum(['true', 'false'])
      .optional()
      .transform((v) => v === 'true'),
  },
  {
    after: auditRange,
    limit: auditRange,
    since: { message: '`since` must be a time (ISO 8601)' },
    actor: { message: '`actor` must be a subject or name' },
    federation: { message: '`federation` must be a federation name' },
    redacted: { message: '`redacted` must be true or false' },
  },
  { kind: 'query' },
);

export const checkpointsQuery = new RequestSchema(
  {
    after: z.coerce.number().int().min(0).default(0),
    limit: z.coerce.number().int().min(1).max(10_000).default(1000),
  },
  { after: auditRange, limit: auditRange },
  { kind: 'query' },
);

export const requestsQuery = new RequestSchema(
  {
    // An empty status lists every request, as `all` does.
    status: z
      .enum(['pending', 'approved', 'rejected', 'all', ''])
      .default('pending')
      .transform((s) => (s === 'all' || s === '' ? undefined : s)),
  },
  { status: { message: '`status` must be pending, approved, rejected or all' } },
  { kind: 'query' },
);

export const enrolledQuery = new RequestSchema(
  { type: z.string().optional() },
  { type: { message: '`type` must be a string' } },
  { kind: 'query' },
);

export const serviceAccountBody = new RequestSchema(
  {
    name: z.string().max(256),
    roles: strings.min(1).max(8),
    org: z.string().max(256).optional(),
    /** Epoch ms; absent: it does not expire. */
    expiresAt: z.number().int().positive().optional(),
  },
  {
    name: { message: '`name` must be a string' },
    roles: { message: '`roles` must be a list of 1 to 8 Pollen roles' },
    org: { message: '`org` must be a string' },
    expiresAt: { message: '`expiresAt` must be a time in epoch milliseconds' },
  },
  { kind: 'body' },
);

export const serviceAccountRevokeBody = new RequestSchema(
  { name: z.string().max(256) },
  { name: { message: '`name` must be a string' } },
  { kind: 'body' },
);

export const noQuery = new RequestSchema({}, {}, { kind: 'query' });
