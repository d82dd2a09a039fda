/**
 * The SuperLink's resource limits on the command line: one flag and one environment variable
 * per limit (superlink/quotas.ts, documented in docs/federation.md "Limits"). The table below is
 * the one place that names them; `pollen superlink` and `pollen start SERVER_KIT` (environment
 * only, through the same options) both read it.
 */
import { type Command, Option } from 'commander';
import { PollenError } from '../../errors.js';
import { DEFAULT_LIMITS, type Limits } from '../../superlink/quotas.js';

const MiB = 1024 * 1024;
const ACCEPTS = {
  size: 'MiB above 0',
  count: 'a whole number from 1',
  rate: 'a number from 0 (0: no limit)',
};

interface LimitFlag {
  /** The option's attribute name on commander's values. */
  key: string;
  flag: string;
  env: string;
  help: string;
  limit: keyof Limits;
  /** Bytes per unit of the flag (MiB), or 1. */
  unit: number;
  /** The values accepted: sizes above 0, counts from 1, a rate from 0 (off). */
  accepts: 'size' | 'count' | 'rate';
}

export const LIMIT_FLAGS: readonly LimitFlag[] = [
  {
    key: 'nodeChunkQuota',
    flag: '--node-chunk-quota <MiB>',
    env: 'POLLEN_NODE_CHUNK_QUOTA',
    help: "most of one run's chunks one SuperNode may hold here (memory and files); past it CHUNK_QUOTA_EXCEEDED",
    limit: 'nodeChunkQuotaBytes',
    unit: MiB,
    accepts: 'size',
  },
  {
    key: 'chunkDiskBudget',
    flag: '--chunk-disk-budget <MiB>',
    env: 'POLLEN_CHUNK_DISK_BUDGET',
    help: 'most chunk files in STATE_DIR (app bundles, run chunks past --chunk-memory); past it STORAGE_FULL',
    limit: 'chunkDiskBudgetBytes',
    unit: MiB,
    accepts: 'size',
  },
  {
    key: 'nodeReplyQueue',
    flag: '--node-reply-queue <replies>',
    env: 'POLLEN_NODE_REPLY_QUEUE',
    help: 'most replies of one SuperNode waiting for a ServerApp to read them; past it REPLY_QUEUE_FULL',
    limit: 'nodeReplyQueue',
    unit: 1,
    accepts: 'count',
  },
  {
    key: 'nodeReplyQueueMib',
    flag: '--node-reply-queue-mib <MiB>',
    env: 'POLLEN_NODE_REPLY_QUEUE_MIB',
    help: 'most bytes of those replies; past it REPLY_QUEUE_FULL',
    limit: 'nodeReplyQueueBytes',
    unit: MiB,
    accepts: 'size',
  },
  {
    key: 'nodeRate',
    flag: '--node-rate <per-second>',
    env: 'POLLEN_NODE_RATE',
    help: 'Fleet requests per second one SuperNode may make, sustained (0: no limit); past it RATE_LIMITED',
    limit: 'nodeRatePerSecond',
    unit: 1,
    accepts: 'rate',
  },
  {
    key: 'nodeBurst',
    flag: '--node-burst <requests>',
    env: 'POLLEN_NODE_BURST',
    help: 'Fleet requests one SuperNode may make at once above --node-rate',
    limit: 'nodeBurst',
    unit: 1,
    accepts: 'count',
  },
  {
    key: 'artefactMaxSize',
    flag: '--artefact-max-size <MiB>',
    env: 'POLLEN_ARTEFACT_MAX_SIZE',
    help: 'largest artefact (final model, metrics, plot) a ServerApp may save; past it ARTEFACT_TOO_LARGE',
    limit: 'artefactMaxBytes',
    unit: MiB,
    accepts: 'size',
  },
  {
    key: 'runArtefactBudget',
    flag: '--run-artefact-budget <MiB>',
    env: 'POLLEN_RUN_ARTEFACT_BUDGET',
    help: "most bytes of one run's artefacts together; past it RUN_ARTEFACTS_FULL",
    limit: 'runArtefactBytes',
    unit: MiB,
    accepts: 'size',
  },
];

/** Add every limit's option (with its environment variable and default) to `cmd`. */
export function addLimitOptions(cmd: Command): Command {
  for (const f of LIMIT_FLAGS)
    cmd.addOption(new Option(f.flag, f.help).env(f.env).default(String(DEFAULT_LIMITS[f.limit] / f.unit)));
  return cmd;
}

/** The limits from option values (`values[key]`, strings); what is left out keeps its default. */
export function limitsFrom(values: Record<string, unknown>): Limits {
  const limits: Limits = { ...DEFAULT_LIMITS };
  for (const f of LIMIT_FLAGS) {
    const raw = values[f.key];
    if (raw === undefined || raw === '') continue;
    const n = Number(raw);
    const ok =
      Number.isFinite(n) &&
      (f.accepts === 'size' ? n > 0 : f.accepts === 'count' ? Number.isInteger(n) && n >= 1 : n >= 0);
    if (!ok)
      throw new PollenError(
        'INVALID_ARGUMENT',
        `${f.flag.split(' ')[0]} (${f.env}) takes ${ACCEPTS[f.accepts]}, not ${JSON.stringify(String(raw))}`,
      );
    limits[f.limit] = Math.floor(n * f.unit);
  }
  return limits;
}
