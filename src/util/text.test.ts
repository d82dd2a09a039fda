import { describe, expect, it } from 'vitest';
import { clip, count, nearest, oneLine } from './text.js';

describe('text', () => {
  it('clips long text and marks the cut; short text is kept', () => {
    expect(clip('abc', 3)).toBe('abc');
    expect(clip('abcd', 3)).toBe('ab…');
    expect(clip('abcd', 3)).toHaveLength(3);
  });

  it('counts with the singular for one and the plural otherwise', () => {
    expect([count(1, 'node'), count(2, 'node'), count(0, 'node')]).toEqual(['1 node', '2 nodes', '0 nodes']);
    expect([count(1, 'reply'), count(3, 'reply'), count(2, 'day')]).toEqual([
      '1 reply',
      '3 replies',
      '2 days',
    ]);
  });

  it('keeps text from elsewhere on one line', () => {
    expect(oneLine('a\nb\r\nc\td\u2028e\u0000f')).toBe('a b  c d e f');
    expect(oneLine('plain text: é ü')).toBe('plain text: é ü');
  });

  it('suggests the nearest word for a typo, and nothing for a word far from all', () => {
    expect(nearest('rn', ['run', 'list', 'log'])).toBe('run');
    expect(nearest('num-round', ['num-rounds', 'learning-rate'])).toBe('num-rounds');
    expect(nearest('lsit', ['list', 'log'])).toBe('list'); // two letters swapped: one edit
    expect(nearest('completely-different', ['num-rounds', 'lr'])).toBeUndefined();
    expect(nearest('x', ['y'])).toBeUndefined();
  });
});
