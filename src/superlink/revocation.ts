/**
 * The SuperLink's view of the project CRL: read from a file (the manual workflow's
 * `pollen cert crl`) or fetched from the Certificate Service (`GET /v1/crl`), accepted only when
 * signed by a certificate of our chain, refreshed while running. A connection whose certificate
 * appears on a new CRL is closed at once.
 *
 * Freshness: a CRL older than the one held (an earlier thisUpdate) is refused, so whoever sits
 * between us and the service cannot replay a list from before a revocation. A CRL past its
 * nextUpdate is still enforced (refusing everyone would stop the federation) but reported as
 * stale on every refresh until a newer one arrives.
 */
import type { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { Logger } from 'pino';
import { Agent, request } from 'undici';
import { PollenError } from '../errors.js';
import { readSignedCrls, serialKey } from '../pki/crl.js';
import { parseCertificates } from '../pki/verify.js';

export interface RevocationOptions {
  file?: string;
  url?: string;
  refreshMs?: number;
  /** Root CA (+ intermediates) PEM: CRL signers we accept. */
  ca: string;
  log: Logger;
}

export class RevocationList {
  readonly #o: RevocationOptions;
  readonly #issuers: X509Certificate[];
  #revoked = new Set<string>();
  #thisUpdate = 0;
  #nextUpdate = Number.POSITIVE_INFINITY;
  #timer: NodeJS.Timeout | undefined;
  #mtime = 0;
  #listeners: (() => void)[] = [];
  readonly #agent: Agent | undefined;

  constructor(o: RevocationOptions) {
    this.#o = o;
    this.#issuers = parseCertificates(o.ca);
    this.#agent = o.url ? new Agent({ connect: { ca: o.ca } }) : undefined;
  }

  /** When the list held was issued (epoch ms; 0 before one is loaded). */
  get thisUpdate(): number {
    return this.#thisUpdate;
  }

  get size(): number {
    return this.#revoked.size;
  }

  /** The list held is past its nextUpdate: its issuer should have published a newer one. */
  get stale(): boolean {
    return Date.now() > this.#nextUpdate;
  }

  isRevoked(serialHex: string): boolean {
    return this.#revoked.has(serialKey(serialHex));
  }

  onChange(fn: () => void): void {
    this.#listeners.push(fn);
  }

  /** First load must succeed when a file is given; a service that is down only warns. */
  async start(): Promise<void> {
    await this.refresh(true);
    this.#timer = setInterval(() => this.refresh(false).catch(() => {}), this.#o.refreshMs ?? 30_000);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#agent?.close().catch(() => {});
  }

  async refresh(first: boolean): Promise<void> {
    let text: string | undefined;
    try {
      if (this.#o.file) {
        const mtime = statSync(this.#o.file).mtimeMs;
        if (first || mtime !== this.#mtime) {
          this.#mtime = mtime;
          text = readFileSync(this.#o.file, 'utf8');
        }
      } else if (this.#o.url) {
        const res = await request(
          new URL('v1/crl', this.#o.url.endsWith('/') ? this.#o.url : `${this.#o.url}/`),
          {
            dispatcher: this.#agent,
            headersTimeout: 10_000,
            bodyTimeout: 10_000,
          },
        );
        text = await res.body.text();
        if (res.statusCode !== 200)
          throw new PollenError('UNAVAILABLE', `GET /v1/crl answered ${res.statusCode}`);
      }
      if (text !== undefined) await this.#load(text);
      if (this.stale)
        this.#o.log.warn(
          { nextUpdate: new Date(this.#nextUpdate).toISOString() },
          'the revocation list is past its nextUpdate; still enforcing it, publish a newer one',
        );
    } catch (e) {
      if (first && this.#o.file)
        throw e instanceof PollenError
          ? e
          : new PollenError('CERT_INVALID', `Cannot read the CRL ${this.#o.file}`, { cause: e });
      this.#o.log.warn(
        { err: e instanceof Error ? e.message : e },
        'revocation list not refreshed; keeping the last one',
      );
    }
  }

  /**
   * One CRL per intermediate (pki/crl.ts createCrls), each signed by a CA of our chain. A peer is
   * refused when any of them lists its serial: serials are random 128-bit numbers, so a list names
   * only certificates of its own issuer.
   */
  async #load(text: string): Promise<void> {
    const crls = await readSignedCrls(text, this.#issuers, 'The revocation list');
    const thisUpdate = Math.max(...crls.map((c) => c.thisUpdate.getTime()));
    if (thisUpdate < this.#thisUpdate)
      throw new PollenError(
        'CERT_INVALID',
        `The revocation list is older (${new Date(thisUpdate).toISOString()}) than the one held (${new Date(this.#thisUpdate).toISOString()})`,
      );
    this.#thisUpdate = thisUpdate;
    this.#nextUpdate = Math.min(...crls.map((c) => c.nextUpdate?.getTime() ?? Number.POSITIVE_INFINITY));
    const next = new Set(crls.flatMap((crl) => crl.entries.map((e) => serialKey(e.serialNumber))));
    const changed = next.size !== this.#revoked.size || [...next].some((s) => !this.#revoked.has(s));
    this.#revoked = next;
    if (changed) {
      this.#o.log.info({ revoked: next.size }, 'revocation list loaded');
      for (const fn of this.#listeners) fn();
    }
  }
}
