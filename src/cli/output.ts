import { readFileSync } from 'node:fs';
import { type ExitCode, type PollenError, toPollenError } from '../errors.js';
import { pc } from './colors.js';

/** The streams a CLI run writes to: the process's, or a test's. */
export interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** Standard input, read whole (for `-` arguments); the process's by default. */
  stdin?: () => string;
}

/**
 * Thrown by a command that already printed its failure document (`Output#failure`): main()
 * only takes the exit code from it, so stdout keeps exactly one document.
 */
export class Reported extends Error {
  constructor(readonly exitCode: ExitCode) {
    super('the failure was reported');
  }
}

/**
 * Where a command's results go. With --json, stdout carries exactly one JSON document and all
 * progress goes to stderr; without it, results are human text on stdout.
 */
export class Output {
  constructor(
    readonly json: boolean,
    private readonly stdout: NodeJS.WritableStream = process.stdout,
    private readonly stderr: NodeJS.WritableStream = process.stderr,
    private readonly stdin: () => string = () => readFileSync(0, 'utf8'),
  ) {}

  /** Standard input, whole (a `-` argument). */
  readInput(): string {
    return this.stdin();
  }

  /** Print the command's result: `data` as JSON, or the text `render` makes of it. */
  result<T>(data: T, render: (data: T) => string | string[]): void {
    if (this.json) {
      this.stdout.write(`${JSON.stringify({ ok: true, ...(data as object) }, null, 2)}\n`);
      return;
    }
    const text = render(data);
    const lines = Array.isArray(text) ? text : [text];
    if (lines.length > 0) this.stdout.write(`${lines.join('\n')}\n`);
  }

  /**
   * A command that failed with a result to show (a run that ended failed): with --json one
   * document `{ ok: false, ...data, error }`; as text the result, then the error. Throw what it
   * returns.
   */
  failure<T>(data: T, e: unknown, render: (data: T) => string | string[]): Reported {
    const err = toPollenError(e);
    if (this.json) {
      this.stdout.write(
        `${JSON.stringify({ ok: false, ...(data as object), error: err.toJSON() }, null, 2)}\n`,
      );
    } else {
      const text = render(data);
      const lines = Array.isArray(text) ? text : [text];
      if (lines.length > 0) this.stdout.write(`${lines.join('\n')}\n`);
      this.error(err);
    }
    return new Reported(err.exitCode);
  }

  /** A line of streamed content (a run's log): stdout, as it comes; never with --json. */
  line(text: string): void {
    this.stdout.write(`${text}\n`);
  }

  /**
   * A line an app running in this process wrote (`pollen simulate`): its stdout as `line()`
   * prints (on stderr with --json, so stdout keeps one document), its stderr on stderr.
   */
  appLine(stream: 'stdout' | 'stderr', text: string): void {
    (stream === 'stdout' && !this.json ? this.stdout : this.stderr).write(`${text}\n`);
  }

  /** The same destinations with progress and results both on stderr (for long-running services). */
  quiet(): Output {
    return new Output(this.json, this.stderr, this.stderr, this.stdin);
  }

  /** Progress and narration: stderr, so stdout stays machine-readable. */
  progress(message: string): void {
    this.stderr.write(this.json ? `${message}\n` : `${pc.dim('›')} ${message}\n`);
  }

  /**
   * What the person at the terminal must do while the command waits (open a URL, type a code):
   * stderr, so stdout keeps the result. With --json, `event` goes as one JSON line a script can
   * read instead.
   */
  instruct(lines: string[], event: Record<string, unknown>): void {
    this.stderr.write(this.json ? `${JSON.stringify(event)}\n` : `${lines.join('\n')}\n`);
  }

  warn(message: string): void {
    this.stderr.write(`${pc.yellow('warning:')} ${message}\n`);
  }

  error(e: unknown): PollenError {
    const err = toPollenError(e);
    if (this.json) {
      this.stdout.write(`${JSON.stringify({ ok: false, error: err.toJSON() }, null, 2)}\n`);
    } else {
      this.stderr.write(`${pc.red(`error[${err.code}]`)}: ${err.message}\n`);
      if (err.hint) this.stderr.write(`  ${pc.dim('hint:')} ${err.hint}\n`);
      if (err.code === 'INTERNAL' && err.detail) this.stderr.write(`${pc.dim(err.detail)}\n`);
    }
    return err;
  }
}

export const ok = pc.green;
export const dim = pc.dim;
export const bold = pc.bold;

/** Metrics on one line, as round listings show them: `train-loss 0.3121  accuracy 0.9050`. */
export function formatMetrics(metrics: Readonly<Record<string, number>>): string {
  return Object.entries(metrics)
    .map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(4)}`)
    .join('  ');
}
