/**
 * Robustness figures for docs/strategies.md: each robust strategy at the most attackers it
 * tolerates among n = 15 replies, against replies scaled ×100, sign-flipped and NaN; the RMS
 * distance of the aggregate from the honest replies' mean, beside FedAvg on the same replies.
 * The assertions are in src/strategies/robustness.test.ts (bound: 2σ).
 *
 *   npx tsx bench/robustness.ts
 */

import { Bulyan, FedAvg, FedMedian, FedTrimmedAvg, Krum, MultiKrum } from '../src/strategies/index.js';
import { ATTACKS, poisonedRound, rmsFromHonest, SIGMA } from '../test/support/poisoned-replies.js';

const N = 15;
const ROBUST = [
  { name: 'FedMedian', f: 7, make: () => new FedMedian() },
  { name: 'FedTrimmedAvg (β 0.2)', f: 3, make: () => new FedTrimmedAvg({ beta: 0.2 }) },
  { name: 'Krum', f: 6, make: () => new Krum({ numMaliciousNodes: 6 }) },
  {
    name: 'MultiKrum (keep 5)',
    f: 6,
    make: () => new MultiKrum({ numMaliciousNodes: 6, numNodesToSelect: 5 }),
  },
  { name: 'Bulyan', f: 3, make: () => new Bulyan({ numMaliciousNodes: 3 }) },
];

const fmt = (x: number) => (Number.isNaN(x) ? 'NaN' : x < 10 ? x.toFixed(4) : x.toFixed(1));
console.log(`n = ${N} replies of 1,000 float32 values; honest spread σ = ${SIGMA}; bound 2σ = ${2 * SIGMA}`);
console.log(
  'RMS distance from the honest mean (strategy | FedAvg on the same replies; NaN replies are left out by both)\n',
);
console.log(`| strategy | f | ${ATTACKS.join(' | ')} |`);
console.log(`|---|---|${ATTACKS.map(() => '---').join('|')}|`);
for (const { name, f, make } of ROBUST) {
  const cells = ATTACKS.map((attack) => {
    const round = poisonedRound(N, f, attack, 7);
    const robust = rmsFromHonest(make().aggregateTrain(1, round.replies).arrays, round.honestMean);
    const fedavg = new FedAvg().aggregateTrain(1, round.replies);
    const control = fmt(rmsFromHonest(fedavg.arrays, round.honestMean));
    return `${fmt(robust)} \\| ${control}`;
  });
  console.log(`| ${name} | ${f} | ${cells.join(' | ')} |`);
}
