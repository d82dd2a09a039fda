/** The TypeScript ClientApp of bench/python-appio.ts: the instruction's arrays back as the reply. */
import { ClientApp, RecordDict } from '../../src/sdk/index.js';

export default new ClientApp({
  train: (message) => new RecordDict({ arrays: message.content.getArrayRecord('arrays')! }),
});
