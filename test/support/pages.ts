import { hugePageSetting, type PageAdvice } from '../../src/strategies/huge-pages.js';

/** What the kernel memory reports on this machine, by Linux's transparent huge page setting. */
export function expectedPageAdvice(): PageAdvice {
  const setting = hugePageSetting();
  if (setting === 'madvise') return 'advised';
  return setting === 'always' || setting === 'never' ? setting : 'unavailable';
}
