import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { withLogContext } from '../util/log-context.js';
import { createLogger, resolveLogFormat } from './log.js';

/** A destination that keeps what the logger wrote. */
function sink(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      chunks.push(String(chunk));
      done();
    },
  });
  return { stream, text: () => chunks.join('') };
}

describe('createLogger', () => {
  it('writes one JSON object a line with the bindings and child bindings on every line', () => {
    const s = sink();
    const log = createLogger({
      level: 'info',
      format: 'json',
      destination: s.stream,
      bindings: { supernode: 'site-a' },
    });
    log.child({ runId: 'r1', nodeId: 'n1' }).info({ round: 2 }, 'round done');
    const line = JSON.parse(s.text().trim());
    expect(line).toMatchObject({
      supernode: 'site-a',
      runId: 'r1',
      nodeId: 'n1',
      round: 2,
      msg: 'round done',
    });
  });

  it("adds the request scope's id to every line logged while the request is served, and only then", async () => {
    const s = sink();
    const log = createLogger({ level: 'info', format: 'json', destination: s.stream });
    await withLogContext({ requestId: 'req-1' }, async () => {
      await Promise.resolve();
      log.info('inside');
    });
    log.info('outside');
    const [inside, outside] = s
      .text()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(inside).toMatchObject({ requestId: 'req-1', msg: 'inside' });
    expect(outside.requestId).toBeUndefined();
  });

  it('redacts secret fields, at the top level and one object down, in json and pretty', () => {
    for (const format of ['json', 'pretty'] as const) {
      const s = sink();
      const log = createLogger({ level: 'info', format, destination: s.stream, tty: false });
      log.info(
        {
          token: 'eyJtoken',
          apiKey: 'k-secret',
          body: { refresh_token: 'rt-secret', privateKey: 'PEMBODY' },
        },
        'call',
      );
      const text = s.text();
      for (const secret of ['eyJtoken', 'k-secret', 'rt-secret', 'PEMBODY'])
        expect(text).not.toContain(secret);
      expect(text).toContain('[redacted]');
    }
  });

  it('prints pretty lines without JSON braces around the message', () => {
    const s = sink();
    createLogger({ level: 'info', format: 'pretty', destination: s.stream, tty: false }).info('listening');
    expect(s.text()).toMatch(/INFO.*listening/);
    expect(() => JSON.parse(s.text())).toThrow();
  });

  it('defaults to pretty on a terminal and json otherwise', () => {
    expect(resolveLogFormat(undefined, true)).toBe('pretty');
    expect(resolveLogFormat(undefined, false)).toBe('json');
    expect(resolveLogFormat('json', true)).toBe('json');
  });

  it('refuses an unknown format or level with INVALID_ARGUMENT and a hint', () => {
    expect(() => resolveLogFormat('xml', false)).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
    expect(() => createLogger({ level: 'loud' })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('--log-level') }),
    );
  });
});
