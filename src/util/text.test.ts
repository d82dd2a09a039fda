import { describe, expect, it } from 'vitest';
import { clip, oneLine } from './text.js';

describe('text', () => {
  it('clips long text and marks the cut; short text is kept', () => {
    expect(clip('abc', 3)).toBe('abc');
    expect(clip('abcd', 3)).toBe('ab…');
    expect(clip('abcd', 3)).toHaveLength(3);
  });

  it('keeps text from elsewhere on one line', () => {
    expect(oneLine('a\nb\r\nc\td\u2028e\u0000f')).toBe('a b  c d e f');
    expect(oneLine('plain text: é ü')).toBe('plain text: é ü');
  });
});
