import { describe, expect, it } from 'vitest';
import { colorEnabled, pc } from './colors.js';

describe('colorEnabled', () => {
  it('NO_COLOR wins, FORCE_COLOR turns colour on, CI alone does not', () => {
    expect(colorEnabled({ NO_COLOR: '1', FORCE_COLOR: '1' })).toBe(false);
    expect(colorEnabled({ FORCE_COLOR: '1' })).toBe(true);
    expect(colorEnabled({ FORCE_COLOR: '0', CI: 'true' })).toBe(process.stdout.isTTY === true);
  });

  it('decides at each call, from the environment of that moment', () => {
    const saved = process.env;
    try {
      process.env = { ...saved, FORCE_COLOR: '1', NO_COLOR: '' };
      expect(pc.red('x')).toBe('\x1b[31mx\x1b[39m');
      process.env = { ...saved, NO_COLOR: '1' };
      expect(pc.red('x')).toBe('x');
    } finally {
      process.env = saved;
    }
  });
});
