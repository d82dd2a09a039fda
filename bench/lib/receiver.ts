/**
 * The receiving process of the transfer benches (bench/transfer-superlink.ts): started with IPC,
 * asked one command at a time (its answers come in order), its first message its addresses.
 */
import { type ChildProcess, spawn } from 'node:child_process';

export interface Receiver<Ready> {
  child: ChildProcess;
  /** Its first message (the addresses it listens on). */
  ready: Ready;
  /** Send `msg` and wait for its answer (after the answers to earlier asks); `{ error }` rejects. */
  ask<T>(msg: object): Promise<T>;
}

export async function startReceiver<Ready>(args: string[], cwd: string): Promise<Receiver<Ready>> {
  const child = spawn(process.execPath, args, { cwd, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  // A failed run must not leave the receiver behind.
  process.on('exit', () => child.kill());
  let queue: Promise<unknown> = Promise.resolve();
  const ask = <T>(msg: object): Promise<T> => {
    const p = queue.then(
      () =>
        new Promise<T>((resolve, reject) => {
          child.once('message', (m: T & { error?: string }) =>
            m.error ? reject(new Error(m.error)) : resolve(m),
          );
          child.send(msg);
        }),
    );
    queue = p.catch(() => {});
    return p;
  };
  const ready = await new Promise<Ready>((resolve, reject) => {
    child.once('message', (m) => resolve(m as Ready));
    child.once('exit', (code) => reject(new Error(`the receiver process exited (${code})`)));
  });
  return { child, ready, ask };
}
