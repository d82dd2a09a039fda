/**
 * The TypeScript ClientApp of bench/python-appio.ts: the instruction's arrays back as the reply,
 * one value of each changed in place as a training step would (every chunk of the reply is new).
 */
import { ClientApp, RecordDict } from '../../src/sdk/index.js';

export default new ClientApp({
  train: (message) => {
    const arrays = message.content.getArrayRecord('arrays')!;
    for (const [, entry] of arrays.entries()) (entry.data as Float32Array)[0]! += 1;
    return new RecordDict({ arrays });
  },
});
