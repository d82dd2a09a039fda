import { describe, expect, it } from 'vitest';
import { listenFailure } from './listen-failure.js';

const nodeError = (code: string) => Object.assign(new Error(code.toLowerCase()), { code });

describe('listenFailure', () => {
  const target = { host: '0.0.0.0', port: 9092, what: 'the Fleet API', option: '--fleet-address' };

  it('says the port is in use, by whom to ask and which option moves it', () => {
    const e = listenFailure(nodeError('EADDRINUSE'), target);
    expect([e.code, e.exitCode]).toEqual(['ADDRESS_IN_USE', 6]);
    expect(e.message).toBe('The Fleet API cannot listen on 0.0.0.0:9092: the address is in use');
    expect(e.hint).toContain('--fleet-address');
    expect(e.hint).toContain("ss -ltnp 'sport = :9092'");
  });

  it('tells a privileged port and an address of another machine apart', () => {
    expect(listenFailure(nodeError('EACCES'), { ...target, port: 80 }).hint).toContain('1024');
    expect(listenFailure(nodeError('EADDRNOTAVAIL'), { ...target, host: '10.9.9.9' }).message).toBe(
      '10.9.9.9 is not an address of this machine (EADDRNOTAVAIL)',
    );
  });
});
