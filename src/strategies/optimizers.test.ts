/**
 * The server-optimizer strategies (FedAdam, FedYogi, FedAdagrad, FedAvgM, QFedAvg) against numpy:
 * the papers' update rules written below in plain numpy, run once for every case of this file.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { refusalOf } from '../../test/support/errors.js';
import {
  jsonArrays,
  maxRelativeError,
  numpyReference,
  randomArrays,
} from '../../test/support/numpy-reference.js';
import { decodeArrayRecord, encodeArrayRecord } from '../sdk/array-encoding.js';
import { ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict } from '../sdk/index.js';
import { FedAdagrad } from './fedadagrad.js';
import { FedAdam } from './fedadam.js';
import { type FedAvg, seededRng } from './fedavg.js';
import { FedAvgM } from './fedavgm.js';
import { FedYogi } from './fedyogi.js';
import { QFedAvg } from './qfedavg.js';

const REFERENCE = `
def weighted_average(replies):
    n = np.array([r["n"] for r in replies], dtype=np.float64)
    w = n / n.sum()
    return {k: sum(wi * arr(r["arrays"][k]) for wi, r in zip(w, replies)) for k in replies[0]["arrays"]}

def run(case):
    s, p = case["strategy"], case["params"]
    x = arrays(case["x0"])
    m = {k: np.zeros_like(v) for k, v in x.items()}
    v = {k: np.zeros_like(a) for k, a in x.items()}
    momentum = None
    out = []
    for t, replies in enumerate(case["rounds"], start=1):
        if s in ("FedAdam", "FedYogi", "FedAdagrad"):
            # Reddi et al. 2021, Algorithm 2
            b1 = 0.0 if s == "FedAdagrad" else p["beta1"]
            a = weighted_average(replies)
            for k in x:
                d = a[k] - x[k]
                m[k] = b1 * m[k] + (1 - b1) * d
                if s == "FedAdam":
                    v[k] = p["beta2"] * v[k] + (1 - p["beta2"]) * d ** 2
                    eta = p["eta"] * np.sqrt(1 - p["beta2"] ** (t + 1)) / (1 - p["beta1"] ** (t + 1))
                elif s == "FedYogi":
                    v[k] = v[k] - (1 - p["beta2"]) * d ** 2 * np.sign(v[k] - d ** 2)
                    eta = p["eta"]
                else:
                    v[k] = v[k] + d ** 2
                    eta = p["eta"]
                x[k] = x[k] + eta * m[k] / (np.sqrt(v[k]) + p["tau"])
        elif s == "FedAvgM":
            # Hsu et al. 2019: SGD with momentum on the pseudo-gradient x - avg
            a = weighted_average(replies)
            g = {k: x[k] - a[k] for k in x}
            if p["serverMomentum"] > 0:
                momentum = g if momentum is None else {k: p["serverMomentum"] * momentum[k] + g[k] for k in x}
                g = momentum
            x = {k: x[k] - p["serverLearningRate"] * g[k] for k in x}
        elif s == "QFedAvg":
            # Li et al. 2020, Algorithm 2 (q-FedAvg)
            L = 1.0 / p["clientLearningRate"]
            q = p["q"]
            deltas, hs = [], []
            for r in replies:
                w = arrays(r["arrays"])
                grad = {k: L * (x[k] - w[k]) for k in x}
                norm = sum(float((g ** 2).sum()) for g in grad.values())
                f = r["loss"] + 1e-10
                deltas.append({k: f ** q * grad[k] for k in x})
                hs.append(q * f ** (q - 1) * norm + L * f ** q)
            x = {k: x[k] - sum(d[k] for d in deltas) / sum(hs) for k in x}
        out.append({k: x[k].ravel() for k in x})
    return out

results = [run(c) for c in cases]
`;

const NODES = ['n1', 'n2', 'n3'];
const EXAMPLES = [10, 20, 70];

interface Case {
  name: string;
  make: () => FedAvg;
  params: Record<string, number>;
  dtype: 'float32' | 'float64';
}

function reply(nodeId: string, arrays: ArrayRecord, metrics: Record<string, number>): Message {
  return Message.create({ dstNodeId: nodeId, messageType: 'train', content: new RecordDict() }).createReply(
    new RecordDict({ arrays, metrics: new MetricRecord(metrics) }),
  );
}

/** Three rounds of three replies; "bias" always comes back as sent: an all-zero update. */
function scenario(dtype: 'float32' | 'float64', seed: number) {
  const rng = seededRng(seed);
  const layout = { 'conv.w': { dtype, shape: [2, 3] }, bias: { dtype, shape: [4] } };
  const x0 = randomArrays(rng, layout);
  const rounds = [1, 2, 3].map(() =>
    NODES.map((nodeId, k) => {
      const arrays = randomArrays(rng, layout);
      arrays.set('bias', x0.get('bias')!);
      return { nodeId, arrays, n: EXAMPLES[k] as number, loss: 0.5 + k * 0.7 + rng() };
    }),
  );
  return { x0, rounds };
}

type Scenario = ReturnType<typeof scenario>;

/** Run `strategy` over rounds [from, to) of the scenario, starting from `x`. */
function runRounds(
  strategy: FedAvg,
  s: Scenario,
  x: ArrayRecord,
  from = 0,
  to = s.rounds.length,
): ArrayRecord[] {
  const out: ArrayRecord[] = [];
  for (let t = from; t < to; t++) {
    strategy.configureTrain(t + 1, x, new ConfigRecord(), NODES);
    const replies = (s.rounds[t] ?? []).map((r) =>
      reply(r.nodeId, r.arrays, { 'num-examples': r.n, train_loss: r.loss }),
    );
    x = strategy.aggregateTrain(t + 1, replies).arrays;
    out.push(x);
  }
  return out;
}

const CASES: Case[] = (['float32', 'float64'] as const).flatMap((dtype): Case[] => [
  {
    name: 'FedAdam (defaults)',
    make: () => new FedAdam(),
    params: { eta: 0.1, beta1: 0.9, beta2: 0.99, tau: 1e-3 },
    dtype,
  },
  {
    name: 'FedAdam (eta 0.05, beta1 0.5, beta2 0.9, tau 0.01)',
    make: () => new FedAdam({ eta: 0.05, beta1: 0.5, beta2: 0.9, tau: 0.01 }),
    params: { eta: 0.05, beta1: 0.5, beta2: 0.9, tau: 0.01 },
    dtype,
  },
  {
    name: 'FedYogi (defaults)',
    make: () => new FedYogi(),
    params: { eta: 0.01, beta1: 0.9, beta2: 0.99, tau: 1e-3 },
    dtype,
  },
  { name: 'FedAdagrad (defaults)', make: () => new FedAdagrad(), params: { eta: 0.1, tau: 1e-3 }, dtype },
  {
    name: 'FedAvgM (lr 0.7, momentum 0.9)',
    make: () => new FedAvgM({ serverLearningRate: 0.7, serverMomentum: 0.9 }),
    params: { serverLearningRate: 0.7, serverMomentum: 0.9 },
    dtype,
  },
  {
    name: 'FedAvgM (defaults: FedAvg)',
    make: () => new FedAvgM(),
    params: { serverLearningRate: 1, serverMomentum: 0 },
    dtype,
  },
  {
    name: 'QFedAvg (lr 0.1, q 0.1)',
    make: () => new QFedAvg({ clientLearningRate: 0.1 }),
    params: { clientLearningRate: 0.1, q: 0.1 },
    dtype,
  },
  {
    name: 'QFedAvg (lr 0.05, q 0: unweighted mean)',
    make: () => new QFedAvg({ clientLearningRate: 0.05, q: 0 }),
    params: { clientLearningRate: 0.05, q: 0 },
    dtype,
  },
]);

const scenarios = CASES.map((c, i) => scenario(c.dtype, 1000 + i));
let expected: Record<string, number[]>[][] = [];

beforeAll(() => {
  expected = numpyReference(
    REFERENCE,
    CASES.map((c, i) => {
      const s = scenarios[i] as Scenario;
      return {
        strategy: c.name.split(' ')[0],
        params: c.params,
        x0: jsonArrays(s.x0),
        rounds: s.rounds.map((rs) => rs.map((r) => ({ arrays: jsonArrays(r.arrays), n: r.n, loss: r.loss }))),
      };
    }),
  );
});

describe('server optimizers against numpy', () => {
  CASES.forEach((c, i) => {
    it(`${c.name}, ${c.dtype}: three rounds give numpy's numbers and keep the dtype and shapes`, () => {
      const s = scenarios[i] as Scenario;
      const got = runRounds(c.make(), s, s.x0);
      const tolerance = c.dtype === 'float32' ? 2e-6 : 1e-12;
      got.forEach((arrays, t) => {
        for (const [name, e] of arrays) {
          expect(e.dtype).toBe(c.dtype);
          expect(e.shape).toEqual(s.x0.get(name)!.shape);
          expect(maxRelativeError(e.data as Float64Array, expected[i]?.[t]?.[name] ?? [])).toBeLessThan(
            tolerance,
          );
        }
      });
      // The all-zero update leaves the layer where it was (no 0/0 in the optimizers).
      if (!c.name.startsWith('QFedAvg'))
        expect(Array.from(got[2]!.get('bias')!.data as Float32Array)).toEqual(
          Array.from(s.x0.get('bias')!.data as Float32Array),
        );
    });

    it(`${c.name}, ${c.dtype}: state saved after round 2, encoded and restored, gives round 3 bit for bit`, () => {
      const s = scenarios[i] as Scenario;
      const straight = runRounds(c.make(), s, s.x0);
      const first = c.make();
      const [, x2] = runRounds(first, s, s.x0, 0, 2);
      const saved = first.saveState();
      const wire = new RecordDict();
      for (const [name, record] of saved)
        wire.set(name, decodeArrayRecord(encodeArrayRecord(record as ArrayRecord)));
      const resumed = c.make();
      resumed.loadState(wire);
      const [x3] = runRounds(resumed, s, x2 as ArrayRecord, 2, 3);
      for (const [name, e] of straight[2] as ArrayRecord)
        expect(Array.from(x3!.get(name)!.data as Float64Array)).toEqual(Array.from(e.data as Float64Array));
    });
  });
});

describe('server optimizers: defaults and refusals', () => {
  it("have Flower's message-API defaults", () => {
    const adam = new FedAdam();
    expect([adam.eta, adam.etaL, adam.beta1, adam.beta2, adam.tau]).toEqual([0.1, 0.1, 0.9, 0.99, 1e-3]);
    const yogi = new FedYogi();
    expect([yogi.eta, yogi.etaL, yogi.beta1, yogi.beta2, yogi.tau]).toEqual([0.01, 0.0316, 0.9, 0.99, 1e-3]);
    const adagrad = new FedAdagrad();
    expect([adagrad.eta, adagrad.etaL, adagrad.beta1, adagrad.beta2, adagrad.tau]).toEqual([
      0.1, 0.1, 0, 0, 1e-3,
    ]);
    const avgm = new FedAvgM();
    expect([avgm.serverLearningRate, avgm.serverMomentum]).toEqual([1, 0]);
    const q = new QFedAvg({ clientLearningRate: 0.1 });
    expect([q.q, q.trainLossKey]).toEqual([0.1, 'train_loss']);
    expect(new FedAdam().saveState().size).toBe(0);
  });

  it('refuse options out of range, naming the option', () => {
    expect(refusalOf(() => new FedAdam({ beta1: 1 }))).toBe(
      'INVALID_ARGUMENT: beta1 must be in [0, 1), got 1',
    );
    expect(refusalOf(() => new FedYogi({ tau: 0 }))).toBe(
      'INVALID_ARGUMENT: tau must be a number > 0, got 0',
    );
    expect(refusalOf(() => new FedAvgM({ serverMomentum: -0.1 }))).toMatch(
      /^INVALID_ARGUMENT: serverMomentum/,
    );
    expect(refusalOf(() => new QFedAvg({} as never))).toMatch(
      /^INVALID_ARGUMENT: clientLearningRate must be a number > 0/,
    );
  });

  const x = ArrayRecord.fromArrays({ w: new Float32Array([1, 2]) });
  const ok = reply('n1', ArrayRecord.fromArrays({ w: new Float32Array([2, 3]) }), {
    'num-examples': 1,
    train_loss: 1,
  });

  it('refuse to aggregate before knowing the global arrays (STRATEGY_STATE_MISSING)', () => {
    for (const s of [
      new FedAdam(),
      new FedAvgM({ serverMomentum: 0.5 }),
      new QFedAvg({ clientLearningRate: 1 }),
    ])
      expect(refusalOf(() => s.aggregateTrain(1, [ok]))).toMatch(/^STRATEGY_STATE_MISSING: /);
  });

  it('refuse replies shaped unlike the global arrays, naming both', () => {
    const other = reply('n1', ArrayRecord.fromArrays({ w: new Float32Array([1, 2, 3]) }), {
      'num-examples': 1,
      train_loss: 1,
    });
    for (const s of [new FedYogi(), new QFedAvg({ clientLearningRate: 1 })]) {
      s.configureTrain(1, x, new ConfigRecord(), ['n1', 'n2']);
      expect(refusalOf(() => s.aggregateTrain(1, [other]))).toMatch(
        /^INVALID_ARGUMENT: .* has arrays \{w: float32 \[3\]\}, the global arrays \{w: float32 \[2\]\}/,
      );
    }
  });

  it('QFedAvg refuses a reply without a usable training loss, naming the node', () => {
    const s = new QFedAvg({ clientLearningRate: 1 });
    s.configureTrain(1, x, new ConfigRecord(), ['n1', 'n2']);
    const noLoss = reply('n2', ArrayRecord.fromArrays({ w: new Float32Array([2, 3]) }), {
      'num-examples': 1,
    });
    expect(refusalOf(() => s.aggregateTrain(1, [ok, noLoss]))).toMatch(
      /^INVALID_ARGUMENT: Reply 1 \(node n2\) reports train_loss = undefined/,
    );
  });

  it('leave out a reply holding NaN or Inf and name its node; the step uses the others', () => {
    const bad = reply('n2', ArrayRecord.fromArrays({ w: new Float32Array([Number.NaN, 3]) }), {
      'num-examples': 1,
      train_loss: 1,
    });
    for (const make of [
      () => new FedAdam(),
      () => new FedAvgM({ serverMomentum: 0.9 }),
      () => new QFedAvg({ clientLearningRate: 1 }),
    ]) {
      const a = make();
      a.configureTrain(1, x, new ConfigRecord(), ['n1', 'n2']);
      const withBad = a.aggregateTrain(1, [ok, bad]);
      const b = make();
      b.configureTrain(1, x, new ConfigRecord(), ['n1', 'n2']);
      const without = b.aggregateTrain(1, [ok]);
      expect(Array.from(withBad.arrays.get('w')!.data as Float32Array)).toEqual(
        Array.from(without.arrays.get('w')!.data as Float32Array),
      );
      expect(withBad.failures).toEqual([
        expect.objectContaining({ nodeId: 'n2', code: 'UPDATE_NOT_FINITE', messageType: 'train' }),
      ]);
    }
  });
});
