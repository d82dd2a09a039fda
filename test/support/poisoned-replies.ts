/**
 * Poisoned rounds for the robustness checks (src/strategies/robustness.test.ts, bench/robustness.ts):
 * n replies of which f are an attacker's. Honest reply k is μ + σ·z_k (z standard normal, per
 * element); the attacker sends 100·(μ + σ·z) (scaled), −(μ + σ·z) (sign-flipped) or NaN
 * everywhere. Every reply reports the same num-examples, so the honest average is plain.
 */
import { ArrayRecord, Message, MetricRecord, RecordDict } from '../../src/sdk/index.js';
import { seededRng } from '../../src/strategies/index.js';

export type Attack = 'scaled ×100' | 'sign-flipped' | 'NaN';
export const ATTACKS: readonly Attack[] = ['scaled ×100', 'sign-flipped', 'NaN'];

/** Spread of the honest replies around μ, per element. */
export const SIGMA = 0.02;
/** Elements in a reply: "w" [40, 20] and "b" [200]. */
const LAYOUT = { w: [40, 20], b: [200] } as const;

export interface PoisonedRound {
  replies: Message[];
  /** Per array, the unweighted mean of the honest replies. */
  honestMean: Record<string, Float64Array>;
}

export function poisonedRound(n: number, f: number, attack: Attack, seed: number): PoisonedRound {
  const rng = seededRng(seed);
  const normal = () => Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
  const mu = Object.fromEntries(
    Object.entries(LAYOUT).map(([name, shape]) => [
      name,
      Float64Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => 2 * rng() - 1),
    ]),
  );
  const honestMean = Object.fromEntries(
    Object.entries(mu).map(([name, m]) => [name, new Float64Array(m.length)]),
  );
  const replies = Array.from({ length: n }, (_, k) => {
    const attacker = k >= n - f;
    const arrays = new ArrayRecord();
    for (const [name, shape] of Object.entries(LAYOUT)) {
      const m = mu[name] as Float64Array;
      const data = Float32Array.from(m, (v) => v + SIGMA * normal());
      const mean = honestMean[name] as Float64Array;
      for (let i = 0; i < data.length; i++) {
        const v = data[i] as number;
        if (!attacker) mean[i] = (mean[i] as number) + v / (n - f);
        else if (attack === 'scaled ×100') data[i] = 100 * v;
        else if (attack === 'sign-flipped') data[i] = -v;
        else data[i] = Number.NaN;
      }
      arrays.set(name, { dtype: 'float32', shape, data });
    }
    const nodeId = `${attacker ? 'attacker' : 'honest'}-${String(k).padStart(2, '0')}`;
    return Message.create({ dstNodeId: nodeId, messageType: 'train', content: new RecordDict() }).createReply(
      new RecordDict({ arrays, metrics: new MetricRecord({ 'num-examples': 100 }) }),
    );
  });
  return { replies, honestMean };
}

/** Root-mean-square distance, over every element, between `arrays` and the honest mean. */
export function rmsFromHonest(arrays: ArrayRecord, honestMean: Record<string, Float64Array>): number {
  let sum = 0;
  let count = 0;
  for (const [name, mean] of Object.entries(honestMean)) {
    const x = arrays.get(name)!.data as Float32Array;
    for (let i = 0; i < mean.length; i++) sum += ((x[i] as number) - (mean[i] as number)) ** 2;
    count += mean.length;
  }
  return Math.sqrt(sum / count);
}
