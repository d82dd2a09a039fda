import type { PeerCertificate } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { checkPollenServer } from './tls.js';

const cert = (san: string): PeerCertificate =>
  ({
    subject: { CN: 'superlink' },
    subjectaltname: san,
    raw: Buffer.from('der'),
    fingerprint256: 'AB:CD',
    serialNumber: '01',
  }) as unknown as PeerCertificate;

describe('checkPollenServer', () => {
  it('accepts a server identity whose addresses match', () => {
    expect(
      checkPollenServer('127.0.0.1', cert('IP Address:127.0.0.1, URI:pollen://p/server/superlink')),
    ).toBeUndefined();
  });

  it('refuses another certificate of the project, even one naming the right address', () => {
    expect(
      checkPollenServer('127.0.0.1', cert('IP Address:127.0.0.1, URI:pollen://p/client/site-1'))?.message,
    ).toMatch(/not a Pollen server: its certificate carries a client identity/);
    expect(checkPollenServer('127.0.0.1', cert('IP Address:127.0.0.1'))?.message).toMatch(
      /no Pollen identity/,
    );
  });

  it('still checks the host name first', () => {
    expect(
      checkPollenServer('10.0.0.9', cert('IP Address:127.0.0.1, URI:pollen://p/server/superlink'))?.message,
    ).toMatch(/IP: 10.0.0.9 is not in the cert's list/);
  });
});
