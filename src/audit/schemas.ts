/** The audit trail as the APIs send it, checked where a reader receives it (the CLI). */
import { z } from 'zod';
import type { Checkpoint } from './checkpoint.js';
import type { ListedEntry } from './entry.js';

const nullableString = z.string().nullable();

export const auditEntrySchema = z.object({
  seq: z.number().int().positive(),
  at: z.string(),
  actor: z.string(),
  actorName: nullableString,
  actorOrg: nullableString,
  auth: nullableString,
  address: nullableString,
  action: z.string(),
  target: z.string(),
  outcome: nullableString,
  federation: nullableString,
  detail: z.record(z.string(), z.unknown()),
  prevHash: z.string(),
  hash: z.string(),
});

export const redactedEntrySchema = z.object({
  seq: z.number().int().positive(),
  redacted: z.literal(true),
  digest: nullableString,
  prevHash: z.string(),
  hash: z.string(),
});

export const listedEntrySchema: z.ZodType<ListedEntry> = z.union([redactedEntrySchema, auditEntrySchema]);

export const checkpointSchema: z.ZodType<Checkpoint> = z.object({
  component: z.string(),
  seq: z.number().int().positive(),
  hash: z.string(),
  at: z.string(),
  signature: z.string(),
  certificate: z.string(),
});
