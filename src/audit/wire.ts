/** Audit entries and checkpoints ↔ the Audit API's protobuf messages (proto/pollen/v1/audit.proto). */
import { create } from '@bufbuild/protobuf';
import {
  AuditEntrySchema,
  CheckpointSchema,
  type Checkpoint as WireCheckpoint,
  type AuditEntry as WireEntry,
} from '../gen/pollen/v1/audit_pb.js';
import type { Checkpoint } from './checkpoint.js';
import type { ListedEntry } from './entry.js';

const opt = (v: string | null) => v ?? undefined;
const nul = (v: string | undefined) => v ?? null;

export function entryToWire(e: ListedEntry): WireEntry {
  if ('redacted' in e)
    return create(AuditEntrySchema, {
      seq: BigInt(e.seq),
      redacted: true,
      digest: opt(e.digest),
      prevHash: e.prevHash,
      hash: e.hash,
    });
  return create(AuditEntrySchema, {
    seq: BigInt(e.seq),
    at: e.at,
    actor: e.actor,
    actorName: opt(e.actorName),
    actorOrg: opt(e.actorOrg),
    auth: opt(e.auth),
    address: opt(e.address),
    action: e.action,
    target: e.target,
    outcome: opt(e.outcome),
    federation: opt(e.federation),
    detailJson: JSON.stringify(e.detail),
    prevHash: e.prevHash,
    hash: e.hash,
  });
}

export function entryFromWire(w: WireEntry): ListedEntry {
  const seq = Number(w.seq);
  if (w.redacted) return { seq, redacted: true, digest: nul(w.digest), prevHash: w.prevHash, hash: w.hash };
  return {
    seq,
    at: w.at,
    actor: w.actor,
    actorName: nul(w.actorName),
    actorOrg: nul(w.actorOrg),
    auth: nul(w.auth),
    address: nul(w.address),
    action: w.action,
    target: w.target,
    outcome: nul(w.outcome),
    federation: nul(w.federation),
    detail: JSON.parse(w.detailJson || '{}') as Record<string, unknown>,
    prevHash: w.prevHash,
    hash: w.hash,
  };
}

export function checkpointToWire(c: Checkpoint): WireCheckpoint {
  return create(CheckpointSchema, { ...c, seq: BigInt(c.seq) });
}

export function checkpointFromWire(w: WireCheckpoint): Checkpoint {
  return {
    component: w.component,
    seq: Number(w.seq),
    hash: w.hash,
    at: w.at,
    signature: w.signature,
    certificate: w.certificate,
  };
}
