/**
 * The robust strategies (FedMedian, FedTrimmedAvg, MultiKrum, Krum, Bulyan) against numpy: the
 * papers' rules written below in plain numpy, run once for every case of this file; then their
 * edge cases and refusals.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { refusalOf } from '../../test/support/errors.js';
import {
  jsonArrays,
  maxRelativeError,
  numpyReference,
  randomArrays,
} from '../../test/support/numpy-reference.js';
import { ArrayRecord, Message, MetricRecord, RecordDict } from '../sdk/index.js';
import { Bulyan } from './bulyan.js';
import { FedAvg, seededRng } from './fedavg.js';
import { FedMedian } from './fedmedian.js';
import { FedTrimmedAvg } from './fedtrimmedavg.js';
import { Krum } from './krum.js';
import { MultiKrum } from './multikrum.js';

const REFERENCE = `
def stack(replies, k):
    return np.stack([arr(r["arrays"][k]) for r in replies])

def flat(r):
    return np.concatenate([arr(a).ravel() for a in r["arrays"].values()])

def krum_select(replies, f, m):
    # Blanchard et al. 2017: score = sum of squared distances to the n - f - 2 nearest others
    n = len(replies)
    X = np.stack([flat(r) for r in replies])
    D = ((X[:, None, :] - X[None, :, :]) ** 2).sum(axis=2)
    nearest = min(max(1, n - f - 2), n - 1)
    scores = np.array([np.sort(np.delete(D[i], i))[:nearest].sum() for i in range(n)])
    return [int(i) for i in np.argsort(scores, kind="stable")[:m]]

def run(c):
    rs, p, s = c["replies"], c["params"], c["strategy"]
    keys = list(rs[0]["arrays"])
    n = len(rs)
    selected = list(range(n))
    if s == "FedMedian":
        out = {k: np.median(stack(rs, k), axis=0) for k in keys}
    elif s == "FedTrimmedAvg":
        cut = int(p["beta"] * n)
        out = {k: np.sort(stack(rs, k), axis=0)[cut:n - cut].mean(axis=0) for k in keys}
    elif s in ("MultiKrum", "Krum"):
        selected = krum_select(rs, p["f"], p["m"])
        w = np.array([rs[i]["n"] for i in selected], dtype=np.float64)
        w = w / w.sum()
        out = {k: sum(wi * arr(rs[i]["arrays"][k]) for wi, i in zip(w, selected)) for k in keys}
    elif s == "Bulyan":
        # El Mhamdi et al. 2018: theta = n - 2f by Krum, then per coordinate the beta = theta - 2f
        # values nearest the median (ties: the earlier reply)
        f = p["f"]
        theta = n - 2 * f
        selected = sorted(krum_select(rs, f, theta))
        beta = theta - 2 * f
        out = {}
        for k in keys:
            S = np.stack([arr(rs[i]["arrays"][k]) for i in selected])
            med = np.median(S, axis=0)
            idx = np.argsort(np.abs(S - med), axis=0, kind="stable")[:beta]
            out[k] = np.take_along_axis(S, idx, axis=0).mean(axis=0)
    w = np.array([rs[i]["n"] for i in selected], dtype=np.float64)
    loss = float((w * np.array([rs[i]["loss"] for i in selected])).sum() / w.sum())
    return {"arrays": {k: v.ravel() for k, v in out.items()}, "selected": selected, "loss": loss}

results = [run(c) for c in cases]
`;

interface Reply {
  nodeId: string;
  arrays: ArrayRecord;
  n: number;
  loss: number;
}

function message(r: Reply): Message {
  return Message.create({ dstNodeId: r.nodeId, messageType: 'train', content: new RecordDict() }).createReply(
    new RecordDict({ arrays: r.arrays, metrics: new MetricRecord({ 'num-examples': r.n, loss: r.loss }) }),
  );
}

/** n replies of random arrays; "zero" is all zeros everywhere; replies 1 and 2 share "w" (ties). */
function replies(n: number, dtype: 'float32' | 'float64', seed: number): Reply[] {
  const rng = seededRng(seed);
  const layout = { w: { dtype, shape: [3, 2] }, b: { dtype, shape: [5] }, zero: { dtype, shape: [2] } };
  const out = Array.from({ length: n }, (_, k) => {
    const arrays = randomArrays(rng, layout);
    (arrays.get('zero')!.data as Float32Array).fill(0);
    return {
      nodeId: `node-${String(k).padStart(2, '0')}`,
      arrays,
      n: 1 + Math.floor(rng() * 50),
      loss: rng(),
    };
  });
  (out[2] as Reply).arrays.set('w', (out[1] as Reply).arrays.get('w')!);
  return out;
}

interface Case {
  name: string;
  strategy: FedAvg;
  params: Record<string, number>;
  n: number;
}

const CASES: Case[] = [
  { name: 'FedMedian, 5 replies', strategy: new FedMedian(), params: {}, n: 5 },
  { name: 'FedMedian, 4 replies (mean of the middle two)', strategy: new FedMedian(), params: {}, n: 4 },
  {
    name: 'FedTrimmedAvg beta 0.2, 5 replies (cut 1)',
    strategy: new FedTrimmedAvg(),
    params: { beta: 0.2 },
    n: 5,
  },
  {
    name: 'FedTrimmedAvg beta 0.25, 10 replies (cut 2)',
    strategy: new FedTrimmedAvg({ beta: 0.25 }),
    params: { beta: 0.25 },
    n: 10,
  },
  {
    name: 'FedTrimmedAvg beta 0 (the mean)',
    strategy: new FedTrimmedAvg({ beta: 0 }),
    params: { beta: 0 },
    n: 4,
  },
  {
    name: 'FedTrimmedAvg beta 0.49, 7 replies (one left)',
    strategy: new FedTrimmedAvg({ beta: 0.49 }),
    params: { beta: 0.49 },
    n: 7,
  },
  { name: 'Krum f 0, 3 replies', strategy: new Krum(), params: { f: 0, m: 1 }, n: 3 },
  { name: 'Krum f 2, 7 replies', strategy: new Krum({ numMaliciousNodes: 2 }), params: { f: 2, m: 1 }, n: 7 },
  {
    name: 'MultiKrum f 1 keeping 3, 7 replies',
    strategy: new MultiKrum({ numMaliciousNodes: 1, numNodesToSelect: 3 }),
    params: { f: 1, m: 3 },
    n: 7,
  },
  { name: 'Bulyan f 1, 7 replies', strategy: new Bulyan({ numMaliciousNodes: 1 }), params: { f: 1 }, n: 7 },
  { name: 'Bulyan f 2, 12 replies', strategy: new Bulyan({ numMaliciousNodes: 2 }), params: { f: 2 }, n: 12 },
];
const DTYPES = ['float32', 'float64'] as const;
const RUNS = CASES.flatMap((c, i) =>
  DTYPES.map((dtype, j) => ({ c, dtype, replies: replies(c.n, dtype, 10 * i + j) })),
);

let expected: { arrays: Record<string, number[]>; selected: number[]; loss: number }[] = [];

beforeAll(() => {
  expected = numpyReference(
    REFERENCE,
    RUNS.map(({ c, replies }) => ({
      strategy: c.name.split(' ')[0]!.replace(',', ''),
      params: c.params,
      replies: replies.map((r) => ({ arrays: jsonArrays(r.arrays), n: r.n, loss: r.loss })),
    })),
  );
});

describe('robust strategies against numpy', () => {
  RUNS.forEach(({ c, dtype, replies }, i) => {
    it(`${c.name}, ${dtype}`, () => {
      const got = c.strategy.aggregateTrain(1, replies.map(message));
      const want = expected[i]!;
      for (const [name, e] of got.arrays) {
        expect(e.dtype).toBe(dtype);
        expect(e.shape).toEqual(replies[0]!.arrays.get(name)!.shape);
        expect(maxRelativeError(e.data as Float64Array, want.arrays[name] ?? [])).toBeLessThan(
          dtype === 'float32' ? 1e-7 : 1e-14,
        );
      }
      expect(Array.from(got.arrays.get('zero')!.data as Float32Array)).toEqual([0, 0]);
      // Metrics: those of the replies that went into the aggregate, weighted by num-examples.
      expect(got.metrics.get('loss')).toBeCloseTo(want.loss, 12);
      expect(got.numReplies).toBe(want.selected.length);
    });
  });

  it('Krum breaks a tie in scores for the earlier reply (node order)', () => {
    const one = (nodeId: string, v: number): Reply => ({
      nodeId,
      arrays: ArrayRecord.fromArrays({ w: new Float32Array([v]) }),
      n: 1,
      loss: v,
    });
    // Every score is 1 (each reply's nearest neighbour is 1 away).
    const got = new Krum().aggregateTrain(1, [one('a', 0), one('b', 1), one('c', 2)].map(message));
    expect(Array.from(got.arrays.get('w')!.data as Float32Array)).toEqual([0]);
  });
});

describe('robust strategies: edge cases and refusals', () => {
  const seven = () => replies(7, 'float32', 99);

  it("have Flower's message-API defaults and refuse options out of range", () => {
    expect(new FedTrimmedAvg().beta).toBe(0.2);
    expect([new MultiKrum().numMaliciousNodes, new MultiKrum().numNodesToSelect]).toEqual([0, 1]);
    expect(new Bulyan().numMaliciousNodes).toBe(0);
    expect(refusalOf(() => new FedTrimmedAvg({ beta: 0.5 }))).toBe(
      'INVALID_ARGUMENT: beta must be in [0, 0.5), got 0.5',
    );
    expect(refusalOf(() => new Krum({ numMaliciousNodes: -1 }))).toBe(
      'INVALID_ARGUMENT: numMaliciousNodes must be an integer >= 0, got -1',
    );
    expect(refusalOf(() => new MultiKrum({ numNodesToSelect: 0 }))).toBe(
      'INVALID_ARGUMENT: numNodesToSelect must be an integer >= 1, got 0',
    );
  });

  it('refuse a round with fewer replies than they need (TOO_FEW_REPLIES)', () => {
    const six = seven().slice(0, 6).map(message);
    expect(refusalOf(() => new Bulyan({ numMaliciousNodes: 1 }).aggregateTrain(1, six))).toBe(
      'TOO_FEW_REPLIES: Bulyan with numMaliciousNodes = 1 needs at least 7 valid replies (4f + 3), the round has 6',
    );
    expect(refusalOf(() => new Krum({ numMaliciousNodes: 2 }).aggregateTrain(1, six))).toBe(
      'TOO_FEW_REPLIES: Krum with numMaliciousNodes = 2 needs at least 7 valid replies (2f + 3), the round has 6',
    );
    expect(refusalOf(() => new FedMedian().aggregateTrain(1, []))).toMatch(
      /^INVALID_ARGUMENT: No replies to aggregate/,
    );
  });

  it('leave out replies holding NaN or Inf, name their nodes, and aggregate the rest', () => {
    // The two left out count among Krum's and Bulyan's f: f = 2 with them is f = 0 without.
    for (const make of [
      () => new FedAvg(),
      () => new FedMedian(),
      () => new FedTrimmedAvg(),
      (f = 2) => new Krum({ numMaliciousNodes: f }),
      (f = 2) => new Bulyan({ numMaliciousNodes: f }),
    ]) {
      const honest = [
        ...seven(),
        ...replies(3, 'float32', 7)
          .slice(0, 2)
          .map((r, k) => ({ ...r, nodeId: `extra-${k}` })),
      ];
      const nan = { ...seven()[0]!, nodeId: 'nan', arrays: honest[0]!.arrays.clone() };
      (nan.arrays.get('b')!.data as Float32Array)[3] = Number.NaN;
      const inf = { ...nan, nodeId: 'inf', arrays: honest[1]!.arrays.clone() };
      (inf.arrays.get('w')!.data as Float32Array)[0] = Number.NEGATIVE_INFINITY;
      const got = make().aggregateTrain(1, [...honest, nan, inf].map(message));
      const clean = make(0).aggregateTrain(1, honest.map(message));
      for (const [name, e] of clean.arrays)
        expect(Array.from(got.arrays.get(name)!.data as Float32Array)).toEqual(
          Array.from(e.data as Float32Array),
        );
      expect(got.failures?.map((f) => `${f.nodeId} ${f.code} ${f.reason}`)).toEqual([
        'nan UPDATE_NOT_FINITE Array "b" holds NaN or Inf: the reply is left out of the aggregate',
        'inf UPDATE_NOT_FINITE Array "w" holds NaN or Inf: the reply is left out of the aggregate',
      ]);
    }
  });

  it('take float32 and float64 arrays only (FedAvg averages the other dtypes)', () => {
    const ints = seven();
    for (const r of ints) r.arrays.set('count', { dtype: 'int32', shape: [1], data: new Int32Array([3]) });
    expect(refusalOf(() => new FedMedian().aggregateTrain(1, ints.map(message)))).toBe(
      'INVALID_ARGUMENT: Array "count" is int32: FedMedian takes float32 and float64 arrays',
    );
    expect(new FedAvg().aggregateTrain(1, ints.map(message)).arrays.get('count')!.dtype).toBe('int32');
  });

  it('refuse a round where every reply holds NaN (UPDATE_NOT_FINITE)', () => {
    const r = seven()[0]!;
    (r.arrays.get('b')!.data as Float32Array)[0] = Number.NaN;
    for (const s of [new FedAvg(), new FedMedian()])
      expect(refusalOf(() => s.aggregateTrain(1, [message(r)]))).toBe(
        'UPDATE_NOT_FINITE: Every reply holds NaN or Inf (nodes node-00): nothing is left to aggregate',
      );
  });

  it('refuse a reply with zero examples, naming its node', () => {
    const rs = seven();
    rs[3]!.n = 0;
    expect(refusalOf(() => new FedMedian().aggregateTrain(1, rs.map(message)))).toBe(
      'INVALID_ARGUMENT: Reply 3 (node node-03) reports num-examples = 0: it must be a number > 0',
    );
  });

  it('refuse replies whose shapes or dtypes differ, naming the reply and the array', () => {
    const shape = seven();
    shape[4]!.arrays.set('b', { dtype: 'float32', shape: [5, 1], data: new Float32Array(5) });
    expect(refusalOf(() => new FedTrimmedAvg().aggregateTrain(1, shape.map(message)))).toBe(
      'INVALID_ARGUMENT: Reply 4 (node node-04) array "b" is float32 [5, 1], reply 0 sends float32 [5]',
    );
    const dtype = seven();
    dtype[5]!.arrays.set('b', { dtype: 'float64', shape: [5], data: new Float64Array(5) });
    expect(refusalOf(() => new Bulyan({ numMaliciousNodes: 1 }).aggregateTrain(1, dtype.map(message)))).toBe(
      'INVALID_ARGUMENT: Reply 5 (node node-05) array "b" is float64 [5], reply 0 sends float32 [5]',
    );
    const names = seven();
    names[6]!.arrays.delete('zero');
    expect(refusalOf(() => new Krum().aggregateTrain(1, names.map(message)))).toBe(
      'INVALID_ARGUMENT: Reply 6 (node node-06) has arrays [w, b], reply 0 has [w, b, zero]',
    );
  });
});
