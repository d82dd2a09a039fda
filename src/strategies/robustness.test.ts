/**
 * Robustness: with f attackers among n = 15 replies, within what each strategy tolerates, the
 * robust aggregates stay within BOUND (RMS, over every element) of the honest replies' mean,
 * while FedAvg on the same replies is pulled far outside it. NaN replies are left out by every
 * strategy (UPDATE_NOT_FINITE); the negative control there is the plain weighted mean, which is
 * NaN. Figures: `npx tsx bench/robustness.ts` (docs/strategies.md).
 */
import { describe, expect, it } from 'vitest';
import { ATTACKS, poisonedRound, rmsFromHonest, SIGMA } from '../../test/support/poisoned-replies.js';
import { ArrayRecord } from '../sdk/index.js';
import { weightedAverage } from './aggregate.js';
import { Bulyan } from './bulyan.js';
import { FedAvg } from './fedavg.js';
import { FedMedian } from './fedmedian.js';
import { FedTrimmedAvg } from './fedtrimmedavg.js';
import { Krum } from './krum.js';
import { MultiKrum } from './multikrum.js';
import { contentsOf, replyArrays } from './records.js';

/** The stated bound: twice the honest replies' spread. */
const BOUND = 2 * SIGMA;
const N = 15;

/** Each robust strategy at the most attackers it tolerates among 15 replies. */
const ROBUST = [
  { name: 'FedMedian', f: 7, make: () => new FedMedian() }, // f < n / 2
  { name: 'FedTrimmedAvg (beta 0.2)', f: 3, make: () => new FedTrimmedAvg({ beta: 0.2 }) }, // f <= ⌊βn⌋
  { name: 'Krum', f: 6, make: () => new Krum({ numMaliciousNodes: 6 }) }, // n >= 2f + 3
  {
    name: 'MultiKrum (keep 5)',
    f: 6,
    make: () => new MultiKrum({ numMaliciousNodes: 6, numNodesToSelect: 5 }),
  },
  { name: 'Bulyan', f: 3, make: () => new Bulyan({ numMaliciousNodes: 3 }) }, // n >= 4f + 3
];

describe('robust strategies against poisoned replies (n = 15)', () => {
  for (const { name, f, make } of ROBUST)
    for (const attack of ATTACKS)
      it(`${name} with ${f} ${attack} replies stays within ${BOUND} of the honest mean; FedAvg does not`, () => {
        const round = poisonedRound(N, f, attack, 7);
        const robust = make().aggregateTrain(1, round.replies);
        expect(rmsFromHonest(robust.arrays, round.honestMean)).toBeLessThan(BOUND);
        if (attack === 'NaN') {
          expect(robust.failures?.map((x) => x.code)).toEqual(Array(f).fill('UPDATE_NOT_FINITE'));
          expect(rmsFromHonest(plainMean(round.replies), round.honestMean)).toBeNaN();
        } else {
          const fedavg = new FedAvg().aggregateTrain(1, round.replies);
          expect(rmsFromHonest(fedavg.arrays, round.honestMean)).toBeGreaterThan(5 * BOUND);
        }
      });
});

/** The weighted mean without the non-finite rule (the kernel alone). */
function plainMean(replies: Parameters<typeof contentsOf>[0]): ArrayRecord {
  const records = contentsOf(replies).map(replyArrays);
  const names = [...(records[0] as ArrayRecord).keys()];
  const mean = weightedAverage(
    records.map((r) => ({ arrays: names.map((n) => r.get(n, 'float32')!.data), weight: 1 })),
  );
  return ArrayRecord.fromArrays(Object.fromEntries(names.map((n, l) => [n, mean[l] as Float32Array])));
}
