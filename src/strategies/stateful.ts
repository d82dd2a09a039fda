/**
 * The base of the strategies that update the global arrays themselves (FedOpt's, FedAvgM,
 * QFedAvg): they record the arrays `configureTrain` sends (x, the point the replies started
 * from) and keep their state between rounds as named ArrayRecords, saved and restored as a
 * RecordDict.
 */
import { type ArrayRecord, type ConfigRecord, type Message, RecordDict } from '../sdk/index.js';
import type { Precision } from './aggregate.js';
import { checkFloatArrays, requireCurrent } from './elementwise.js';
import { FedAvg, type FedAvgOptions } from './fedavg.js';

/**
 * FedAvg with state: `current` (x) and the ArrayRecords named in the constructor. `keepFirst`
 * keeps the first arrays sent as x (FedAvgM, which then updates x itself); otherwise x is the
 * arrays of the latest `configureTrain`.
 *
 * @example
 * ```ts
 * class Lookahead extends StatefulFedAvg {
 *   constructor() {
 *     super({}, ['slow']);
 *   }
 * }
 * ```
 */
export abstract class StatefulFedAvg extends FedAvg {
  /** The state: `current` and the strategy's own records, by name. */
  protected readonly state = new Map<string, ArrayRecord>();
  /**
   * The average in float64 (rounded once): the steps on it are float64, and so a layer whose
   * replies all equal x averages to x exactly, not an ulp off that η/τ would amplify.
   */
  protected override readonly averagePrecision: Precision = 'float64';
  readonly #names: readonly string[];
  readonly #keepFirst: boolean;

  protected constructor(options: FedAvgOptions, names: readonly string[], keepFirst = false) {
    super(options);
    this.#names = ['current', ...names];
    this.#keepFirst = keepFirst;
  }

  override configureTrain(
    serverRound: number,
    arrays: ArrayRecord,
    config: ConfigRecord,
    nodeIds: readonly string[],
  ): Message[] {
    if (!(this.#keepFirst && this.state.has('current'))) this.state.set('current', arrays);
    return super.configureTrain(serverRound, arrays, config, nodeIds);
  }

  /** x: STRATEGY_STATE_MISSING before any configureTrain or loadState; float32 and float64 only. */
  protected current(): ArrayRecord {
    const x = requireCurrent(this.state.get('current'), this.constructor.name);
    checkFloatArrays(x, this.constructor.name);
    return x;
  }

  /** Copies of the state's records, under their names (those not set yet are absent). */
  override saveState(): RecordDict {
    const saved = new RecordDict();
    for (const [name, record] of this.state) saved.set(name, record.clone());
    return saved;
  }

  /** Copies of the named ArrayRecords of `saved` (RECORD_INVALID where one is another kind). */
  override loadState(saved: RecordDict): void {
    this.state.clear();
    for (const name of this.#names) {
      const record = saved.getArrayRecord(name);
      if (record !== undefined) this.state.set(name, record.clone());
    }
  }
}
