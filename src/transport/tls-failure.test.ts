import { describe, expect, it } from 'vitest';
import { PollenError } from '../errors.js';
import { tlsFailure, tlsFailureKind } from './tls-failure.js';

const nodeError = (code: string, cause?: unknown) =>
  Object.assign(new Error(code.toLowerCase()), { code }, cause ? { cause } : {});

describe('tlsFailureKind', () => {
  it('reads who refused whom from the Node/OpenSSL code', () => {
    expect(
      [
        'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
        'SELF_SIGNED_CERT_IN_CHAIN',
        'CERT_HAS_EXPIRED',
        'ERR_TLS_CERT_ALTNAME_INVALID',
        'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA',
        'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED',
        'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE',
        'ERR_SSL_WRONG_VERSION_NUMBER',
        'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL',
        'ERR_SSL_NO_PROTOCOLS_AVAILABLE',
        'ECONNRESET',
      ].map(tlsFailureKind),
    ).toEqual([
      'chain',
      'chain',
      'chain',
      'hostname',
      'refused',
      'refused',
      'refused',
      'protocol',
      'protocol',
      'handshake',
      undefined,
    ]);
  });
});

describe('tlsFailure', () => {
  const peer = {
    peer: 'the SuperLink at https://h:9092',
    hint: 'fix ours',
    refusedHint: 'fix yours',
    protocolHint: 'fix the address',
  };

  it('finds the TLS failure among the causes and gives each kind its code and hint', () => {
    const wrapped = (code: string) =>
      new Error('fetch failed', { cause: nodeError('UND_ERR_SOCKET', nodeError(code)) });
    const chain = tlsFailure(wrapped('UNABLE_TO_GET_ISSUER_CERT_LOCALLY'), {
      ...peer,
      trusted: "the kit's root",
    });
    expect([chain?.code, chain?.hint, chain?.exitCode]).toEqual(['TLS_FAILED', 'fix ours', 5]);
    expect(chain?.message).toBe(
      "TLS to the SuperLink at https://h:9092 failed (UNABLE_TO_GET_ISSUER_CERT_LOCALLY): its certificate does not chain to the kit's root",
    );
    const refused = tlsFailure(wrapped('ERR_SSL_TLSV1_ALERT_UNKNOWN_CA'), peer);
    expect([refused?.code, refused?.hint]).toEqual(['CERT_NOT_ACCEPTED', 'fix yours']);
    expect(refused?.message).toMatch(/^The SuperLink at https:\/\/h:9092 refused this certificate/);
    const plain = tlsFailure(wrapped('ERR_SSL_WRONG_VERSION_NUMBER'), peer);
    expect([plain?.code, plain?.hint, plain?.exitCode]).toEqual(['WRONG_ENDPOINT', 'fix the address', 2]);
  });

  it('is no TLS failure for other errors, nor for a PollenError whose code looks like one', () => {
    expect(tlsFailure(nodeError('ECONNREFUSED'), peer)).toBeUndefined();
    expect(
      tlsFailure(new Error('x', { cause: new PollenError('CERT_REVOKED', 'revoked') }), peer),
    ).toBeUndefined();
  });
});
