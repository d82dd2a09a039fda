import { describe, expect, it } from 'vitest';
import { pollenErrorOf } from '../../test/support/errors.js';
import { runConfigOf } from './run-config.js';

describe('runConfigOf', () => {
  it("applies overrides to the app's declared run config, keeping its key order", () => {
    const config = runConfigOf({ 'num-rounds': 3, lr: 0.1, mode: 'fast' }, { lr: 0.5, mode: 'slow' });
    expect(config).toEqual({ 'num-rounds': 3, lr: 0.5, mode: 'slow' });
    expect(Object.keys(config)).toEqual(['num-rounds', 'lr', 'mode']);
  });

  it('refuses a key the app does not declare, naming the keys it has and the nearest one', async () => {
    const e = await pollenErrorOf(
      (async () => runConfigOf({ 'num-rounds': 3, lr: 0.1 }, { 'num-round': 2 }, 'my-app'))(),
    );
    expect(e).toMatchObject({
      code: 'RUN_CONFIG_UNKNOWN',
      message: 'The app my-app has no run config "num-round"',
      data: { key: 'num-round', declared: ['num-rounds', 'lr'], suggestion: 'num-rounds' },
    });
    expect(e.hint).toMatch(/^Did you mean num-rounds\? It declares: num-rounds, lr\./);
    const far = await pollenErrorOf((async () => runConfigOf({ 'num-rounds': 3, lr: 0.1 }, { epochs: 2 }))());
    expect(far).toMatchObject({ message: 'The app has no run config "epochs"' });
    expect(far.hint).toMatch(/^It declares: num-rounds, lr\./);
  });

  it('refuses names every object inherits, and says when the app declares nothing', async () => {
    const e = await pollenErrorOf((async () => runConfigOf({}, { toString: 1 }))());
    expect(e).toMatchObject({ message: 'The app has no run config "toString"' });
    expect(e.hint).toMatch(/^It declares no run config keys\./);
  });
});
