/**
 * The node's session with the SuperLink. Two tasks share the node's one HTTP/2 connection (each
 * call is its own stream):
 *  - the poll loop: activate, then long-poll PullMessages (wait_ms = pollWaitMs), hand what comes
 *    over, poll again; when the SuperLink is away or refuses for now, reconnect with backoff;
 *    when it refuses for good (fleet-call.ts `permanent`: not registered, revoked, wrong CA or
 *    address…), stop both tasks and report the refusal (`onRefused`);
 *  - the ticker (independent of the poll): a Heartbeat when one is due, so a poll waiting on the
 *    SuperLink never delays one, and a new node-key session before the current one ends. The
 *    heartbeat names the node's open runs and the answer says which finished; with an older
 *    SuperLink, which does not answer that, the runs are asked about (RunWatch). It sleeps until
 *    the first of these falls due (woken sooner when a new session or run brings one closer), so
 *    an idle node wakes once per heartbeat, not every second.
 * A pull does not count as a heartbeat: liveness stays one explicit call per interval, which the
 * SuperLink keeps in memory.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { PollenError } from '../errors.js';
import type { WireMessage } from '../transport/wire.js';
import type { SessionHolder } from './fleet-auth.js';
import { call, type FleetClient, permanent, remoteError, transient, waitBeforeRetry } from './fleet-call.js';
import { type NodeTime, pause } from './node-time.js';

/** What the session needs of the node's runs. */
export interface RunWatch {
  /** The runs with an open slot (a heartbeat names the first 64). */
  openRuns(): string[];
  /** The SuperLink answered for `checked`; those in `finished` are over. */
  reported(checked: string[], finished: string[]): void;
  /** Ask about the runs heartbeats leave out (all of them when `onHeartbeat` is false). */
  askUncovered(onHeartbeat: boolean): Promise<void>;
  /** When askUncovered next has a run to ask about (+Infinity: none). */
  nextAskAt(onHeartbeat: boolean): number;
}

export interface FleetSessionOptions {
  fleet: FleetClient;
  /** Where the node-key session lives for the request signers (fleet-auth.ts). */
  holder: SessionHolder;
  name: string;
  /** The SuperLink's address, for logs. */
  superlink: string;
  heartbeatMs: number;
  pollWaitMs: number;
  pollMs: number;
  time: NodeTime;
  log: Logger;
  /** Aborted when the node closes: the loops and their waits end. */
  signal: AbortSignal;
  runs: RunWatch;
  /**
   * What a failed call means (default: the code the SuperLink sent, `remoteError`); the node's
   * explains transport failures too (a TLS refusal, a wrong address: fleet-call.ts).
   */
  explain?: (e: unknown) => Promise<PollenError>;
  /**
   * Connection changes, for an embedder that reports them itself (the CLI prints them): the log
   * then keeps them at debug, so a file that takes both (a kit's log.txt) holds each once.
   */
  onConnected?: (nodeId: string) => void;
  onDisconnected?: (error: string, retryInMs: number) => void;
  /** Refused for good: both tasks ended. */
  onRefused?: (error: PollenError) => void;
}

/** The most runs one heartbeat names. */
export const HEARTBEAT_RUNS = 64;

export class FleetSession {
  readonly ready: Promise<string>;
  #resolveReady: (nodeId: string) => void = () => {};
  #nodeId = '';
  #connected = false;
  #lastHeartbeat = 0;
  /** The long poll in flight, aborted to reconnect or to close. */
  #poll: AbortController | undefined;
  /** The ticker's sleep, aborted when something falls due sooner, or to close. */
  #wake: AbortController | undefined;
  /** Why the ticker broke the connection (the poll loop reports it and reconnects). */
  #dropped: PollenError | 'reactivate' | undefined;
  /** This process, for the SuperLink: a new one tells it the instructions we held are lost. */
  readonly #instanceId = randomBytes(8).toString('hex');
  /** When to open the next node-key session (before this one expires). */
  #renewAt = Number.POSITIVE_INFINITY;
  /** The SuperLink reports finished runs on heartbeats (runs_checked). */
  #runsOnHeartbeat = false;
  /** Why the SuperLink refused this node for good; the loops end once it is set. */
  #refused: PollenError | undefined;

  constructor(private readonly o: FleetSessionOptions) {
    this.ready = new Promise((r) => {
      this.#resolveReady = r;
    });
    o.signal.addEventListener(
      'abort',
      () => {
        this.#poll?.abort();
        this.#wake?.abort();
      },
      { once: true },
    );
  }

  get nodeId(): string {
    return this.#nodeId;
  }

  get connected(): boolean {
    return this.#connected;
  }

  /** Why the SuperLink refused this node for good, once it did. */
  get refused(): PollenError | undefined {
    return this.#refused;
  }

  /** Whether the node holds a node-key session (node-key mode, once activated). */
  get hasSession(): boolean {
    return this.o.holder.session !== undefined;
  }

  /** Run the poll loop and the ticker until the signal aborts; `handle` takes each instruction. */
  async run(handle: (message: WireMessage) => Promise<void>): Promise<void> {
    await Promise.all([this.#pollLoop(handle), this.#tickLoop()]);
  }

  /** A fresh session on the live connection (the old one stays valid until it expires). */
  async renew(): Promise<void> {
    await this.#activateCall();
    this.o.log.debug({ nodeId: this.#nodeId }, 'node-key session renewed');
  }

  /** Something the ticker acts on may fall due sooner than it planned (a run opened): wake it. */
  reschedule(): void {
    this.#wake?.abort();
  }

  /** DeactivateNode, when connected (closing: a SuperLink that does not answer is not waited for). */
  async deactivate(): Promise<void> {
    if (this.#connected) await this.o.fleet.deactivateNode({}, { timeoutMs: 2_000 }).catch(() => {});
  }

  /** ActivateNode: signed with the node key in node-key mode, it also opens a fresh session. */
  async #activateCall() {
    const { fleet, holder, time } = this.o;
    const res = await call(() =>
      fleet.activateNode(
        { heartbeatIntervalMs: this.o.heartbeatMs, name: this.o.name, instanceId: this.#instanceId },
        // Closing ends an activation in flight, also one a SuperLink that does not answer holds.
        { signal: this.o.signal },
      ),
    );
    holder.session = res.session
      ? { sessionId: res.session.sessionId, secret: res.session.secret }
      : undefined;
    // Renew with a quarter of the session's life left (at most 10 minutes early), so a
    // long-running node never sends a call on an expired session.
    const now = time.now();
    const life = res.session ? Number(res.session.expiresAt) - now : Number.POSITIVE_INFINITY;
    this.#renewAt = now + Math.max(life - Math.min(600_000, life / 4), 1_000);
    this.reschedule();
    return res;
  }

  async #activate(): Promise<void> {
    const res = await this.#activateCall();
    this.#nodeId = res.nodeId;
    this.#connected = true;
    this.#dropped = undefined;
    // Activation counts as the first heartbeat.
    this.#lastHeartbeat = this.o.time.now();
    this.o.log[this.o.onConnected ? 'debug' : 'info'](
      { nodeId: this.#nodeId, superlink: this.o.superlink },
      'connected to the SuperLink',
    );
    this.o.onConnected?.(this.#nodeId);
    this.#resolveReady(this.#nodeId);
    this.reschedule();
  }

  /** Drop the connection from outside the poll loop: it wakes, then re-activates. */
  #drop(why: PollenError | 'reactivate'): void {
    if (!this.#connected) return;
    this.#connected = false;
    this.#dropped = why;
    this.#poll?.abort();
  }

  async #pollLoop(handle: (message: WireMessage) => Promise<void>): Promise<void> {
    const { fleet, time, log, signal, pollWaitMs } = this.o;
    const explain = this.o.explain ?? (async (e: unknown) => remoteError(e));
    let backoff = 500;
    while (!signal.aborted) {
      try {
        if (!this.#connected) await this.#activate();
        backoff = 500;
        const started = time.now();
        const ac = new AbortController();
        this.#poll = ac;
        const { messages } = await call(() =>
          fleet.pullMessages(
            { maxMessages: 16, waitMs: pollWaitMs },
            // A bound in case the connection dies silently (HTTP/2 pings also catch that).
            { signal: ac.signal, timeoutMs: pollWaitMs > 0 ? pollWaitMs + 15_000 : undefined },
          ),
        ).finally(() => {
          if (this.#poll === ac) this.#poll = undefined;
        });
        for (const m of messages) await handle(m);
        // Long polling off, or a SuperLink that ignores wait_ms: wait out the poll interval.
        const early = this.o.pollMs - (time.now() - started);
        if (messages.length === 0 && early > 0) await pause(time, early, signal);
      } catch (e) {
        if (signal.aborted) break;
        // The ticker broke the connection (aborting the poll): act on its reason.
        const why = this.#dropped;
        this.#dropped = undefined;
        if (why === 'reactivate') continue;
        const err = await explain(why ?? e);
        if (signal.aborted) break;
        if (permanent(err)) {
          this.#stop(err);
          break;
        }
        const r = time.random();
        // Past the request rate, the SuperLink says how long to wait; otherwise back off.
        const retryInMs = waitBeforeRetry(err, Math.round(backoff * (0.75 + r * 0.5)), r);
        if (err.code === 'RATE_LIMITED' && this.#connected) {
          // Past the request rate: wait, then poll again on the same connection.
          log.warn({ code: err.code, reason: err.message, retryInMs }, 'over the request rate; retrying');
        } else {
          this.#connected = false;
          if (err.code === 'NODE_SESSION_EXPIRED') continue;
          log[this.o.onDisconnected ? 'debug' : 'warn'](
            {
              event: 'supernode.retry',
              code: err.code,
              reason: err.message,
              retryInMs,
              retryAt: new Date(time.now() + retryInMs).toISOString(),
            },
            'SuperLink unreachable or refusing for now; retrying',
          );
          this.o.onDisconnected?.(`${err.code}: ${err.message}`, retryInMs);
        }
        await pause(time, retryInMs, signal);
        backoff = Math.min(backoff * 2, 30_000);
      }
    }
  }

  /** Refused for good: end both loops and say so once. */
  #stop(err: PollenError): void {
    this.#connected = false;
    this.#refused = err;
    this.o.log.error(
      { event: 'supernode.refused', code: err.code, reason: err.message, hint: err.hint },
      'refused by the SuperLink; not retrying',
    );
    this.#wake?.abort();
    this.o.onRefused?.(err);
  }

  async #tickLoop(): Promise<void> {
    const { time, signal, log } = this.o;
    let lastTick = Number.NEGATIVE_INFINITY;
    let wake = new AbortController();
    while (!signal.aborted && !this.#refused) {
      // A new controller only after one was used up (woken sooner): most sleeps run to their end.
      if (wake.signal.aborted) wake = new AbortController();
      this.#wake = wake;
      // At most a heartbeat interval: nothing waits longer than that to be looked at again.
      await pause(time, Math.min(this.#nextDue(lastTick) - time.now(), this.o.heartbeatMs), wake.signal);
      if (signal.aborted || this.#refused) return;
      // Woken sooner (a new session, a run opened) with nothing due yet: plan again.
      if (time.now() < this.#nextDue(lastTick)) continue;
      lastTick = time.now();
      await this.#tick().catch((e) => log.debug({ reason: String(e) }, 'tick failed'));
    }
  }

  /**
   * When the ticker next has work: a heartbeat, a session renewal or a run to ask about. What was
   * due at the last tick and still is (the SuperLink was away) is tried again a second later.
   */
  #nextDue(lastTick: number): number {
    if (!this.#connected) return Number.POSITIVE_INFINITY;
    const again = Math.min(1_000, this.o.heartbeatMs);
    const at = (due: number) => (due > lastTick ? due : lastTick + again);
    const renewal = this.o.holder.session ? this.#renewAt : Number.POSITIVE_INFINITY;
    const runs = this.o.runs.nextAskAt(this.#runsOnHeartbeat);
    return Math.min(at(this.#lastHeartbeat + this.o.heartbeatMs), at(renewal), at(runs));
  }

  async #tick(): Promise<void> {
    const { holder, time } = this.o;
    if (!this.#connected) return;
    if (holder.session && time.now() >= this.#renewAt)
      await this.renew().catch((e) => {
        const err = remoteError(e);
        if (err.code !== 'UNAVAILABLE') this.#drop(err);
      });
    if (time.now() - this.#lastHeartbeat >= this.o.heartbeatMs) await this.#heartbeat();
    // The SuperLink answers run status on heartbeats; older ones are asked with GetRun.
    if (this.#connected) await this.o.runs.askUncovered(this.#runsOnHeartbeat);
  }

  async #heartbeat(): Promise<void> {
    const { fleet, time, runs, heartbeatMs } = this.o;
    this.#lastHeartbeat = time.now();
    try {
      const open = runs.openRuns().slice(0, HEARTBEAT_RUNS);
      const res = await call(() =>
        fleet.heartbeat({ heartbeatIntervalMs: heartbeatMs, runIds: open }, { timeoutMs: heartbeatMs }),
      );
      if (!res.known) this.#drop('reactivate');
      else if (res.runsChecked) {
        this.#runsOnHeartbeat = true;
        runs.reported(open, res.finishedRunIds);
      }
    } catch (e) {
      const err = remoteError(e);
      // Unreachable: the poll sees it too and reconnects with backoff. Past the rate: the next
      // one goes through. Refused (an expired session, a withdrawn key): break the connection now.
      if (!transient(err)) this.#drop(err);
      else this.o.log.debug({ code: err.code, reason: err.message }, 'heartbeat failed');
    }
  }
}
