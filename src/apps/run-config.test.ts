import { describe, expect, it } from 'vitest';
import { pollenErrorOf } from '../../test/support/errors.js';
import { runConfigOf } from './run-config.js';

describe('runConfigOf', () => {
  it("applies overrides to the app's declared run config, keeping its key order", () => {
    const config = runConfigOf({ 'num-rounds': 3, lr: 0.1, mode: 'fast' }, { lr: 0.5, mode: 'slow' });
    expect(config).toEqual({ 'num-rounds': 3, lr: 0.5, mode: 'slow' });
    expect(Object.keys(config)).toEqual(['num-rounds', 'lr', 'mode']);
  });

  it('refuses a key the app does not declare, naming the keys it has', async () => {
    const e = await pollenErrorOf((async () => runConfigOf({ 'num-rounds': 3, lr: 0.1 }, { epochs: 2 }))());
    expect(e).toMatchObject({ code: 'INVALID_ARGUMENT', message: 'The app has no run config "epochs"' });
    expect(e.hint).toBe('Its keys: num-rounds, lr');
  });

  it('refuses names every object inherits, and says when the app declares nothing', async () => {
    const e = await pollenErrorOf((async () => runConfigOf({}, { toString: 1 }))());
    expect(e).toMatchObject({ message: 'The app has no run config "toString"', hint: 'Its keys: (none)' });
  });
});
