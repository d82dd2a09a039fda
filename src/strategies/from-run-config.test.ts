/** strategyFromRunConfig: the strategy a run config names, with Flower's parameter names. */
import { describe, expect, it } from 'vitest';
import { refusalOf } from '../../test/support/errors.js';
import type { PollenError } from '../sdk/index.js';
import { FedAdam, FedAvg, FedMedian, Krum, strategyFromRunConfig } from './index.js';

describe('strategyFromRunConfig', () => {
  it('makes the named strategy with its own settings from the run config over the defaults', () => {
    const adam = strategyFromRunConfig('FedAdam', { eta: 0.05, 'beta-1': 0.5, 'local-epochs': 3 }) as FedAdam;
    expect(adam).toBeInstanceOf(FedAdam);
    expect([adam.eta, adam.beta1, adam.tau]).toEqual([0.05, 0.5, 1e-3]); // tau: FedAdam's default
    const krum = strategyFromRunConfig(
      'Krum',
      { 'num-malicious-nodes': 1, 'min-train-nodes': 5 },
      { minTrainNodes: 1, minAvailableNodes: 1 },
    ) as Krum;
    expect(krum).toBeInstanceOf(Krum);
    // The run config wins over the defaults; a default stands where the run config is silent.
    expect([krum.numMaliciousNodes, krum.minTrainNodes, krum.minAvailableNodes]).toEqual([1, 5, 1]);
    expect(strategyFromRunConfig('FedMedian', {})).toBeInstanceOf(FedMedian);
    expect(strategyFromRunConfig('FedAvg', { eta: 7 })).toBeInstanceOf(FedAvg); // not FedAvg's: ignored
  });

  it('refuses an unknown name or a bad setting, naming the run config key', () => {
    expect(refusalOf(() => strategyFromRunConfig('FedAVG', {}))).toBe(
      'INVALID_ARGUMENT: Run config "strategy" must be one of FedAvg, FedProx, FedAdam, FedYogi, FedAdagrad, FedAvgM, FedMedian, FedTrimmedAvg, Krum, MultiKrum, Bulyan, QFedAvg: got "FedAVG"',
    );
    const notAName = (() => {
      try {
        strategyFromRunConfig(3, {});
      } catch (e) {
        return e as PollenError;
      }
    })();
    expect(notAName?.message).toBe(
      'Run config "strategy" must be one of FedAvg, FedProx, FedAdam, FedYogi, FedAdagrad, FedAvgM, FedMedian, FedTrimmedAvg, Krum, MultiKrum, Bulyan, QFedAvg: got 3',
    );
    expect(notAName?.hint).toMatch(/--run-config KEY=VALUE/);
    expect(refusalOf(() => strategyFromRunConfig('FedAdam', { eta: 0 }))).toBe(
      'INVALID_ARGUMENT: Run config "eta" must be a number > 0: got 0',
    );
    expect(refusalOf(() => strategyFromRunConfig('FedProx', {}))).toBe(
      'INVALID_ARGUMENT: Run config "proximal-mu" must be a number >= 0: it is not set',
    );
  });
});
