/**
 * Every dtype between the two SDKs, bit for bit: a message the TypeScript SDK puts on the wire is
 * read by the Python SDK (Debian's numpy and protobuf), which encodes it again; the TypeScript
 * SDK reads that back. Both cut the same chunks (same ids), inline the same arrays and name the
 * same dtypes.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { afterAll, describe, expect, it } from 'vitest';
import * as pb from '../src/gen/pollen/v1/records_pb.js';
import { Message } from '../src/sdk/message.js';
import { RecordDict } from '../src/sdk/records.js';
import { messageFromWire, messageToWire } from '../src/transport/wire.js';
import { everyDType, expectSameArrays, NUMPY_DESCR } from './support/dtypes.js';
import { PYTHON } from './support/python.js';

const root = join(import.meta.dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'pollen-dtypes-interop-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Python: read ts.bin and chunks/, check what it got, write py.bin and py-chunks/ with the same sizes. */
const PY = `
import json, os, sys
from pollen._proto.pollen.v1 import records_pb2
from pollen._wire import message_from_wire, message_to_wire
d, inline_max, chunk_size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
wire = records_pb2.Message.FromString(open(os.path.join(d, "ts.bin"), "rb").read())
read = lambda cid: open(os.path.join(d, "chunks", cid), "rb").read()
message = message_from_wire(wire, read)
seen = [[n, a.dtype, list(a.shape), a.numpy().dtype.str, a.numpy().tobytes().hex()] for n, a in message.content["arrays"].items()]
again, chunks = message_to_wire(message, inline_max=inline_max, chunk_size=chunk_size)
os.makedirs(os.path.join(d, "py-chunks"), exist_ok=True)
for cid, data in chunks.items():
    open(os.path.join(d, "py-chunks", cid), "wb").write(bytes(data))
open(os.path.join(d, "py.bin"), "wb").write(again.SerializeToString())
print(json.dumps(seen))
`;

describe('every dtype between the TypeScript and the Python SDK', () => {
  for (const sizes of [
    { inlineMax: 65536, chunkSize: 4 << 20 },
    { inlineMax: 0, chunkSize: 8 },
  ])
    it(`round-trips bit for bit with the same wire form (inline up to ${sizes.inlineMax} B, chunks of ${sizes.chunkSize} B)`, async () => {
      const at = join(dir, String(sizes.chunkSize));
      mkdirSync(join(at, 'chunks'), { recursive: true });
      const arrays = everyDType();
      const sent = new Message({
        metadata: {
          runId: 'run-1',
          messageId: 'm-1',
          srcNodeId: '0',
          dstNodeId: '7',
          replyToMessageId: '',
          groupId: '1',
          ttlSeconds: 3600,
          messageType: 'train',
          createdAt: 1_700_000_000_000,
        },
        content: new RecordDict({ arrays }),
      });
      const { wire, chunks } = messageToWire(sent, sizes);
      writeFileSync(join(at, 'ts.bin'), toBinary(pb.MessageSchema, wire));
      for (const [id, data] of chunks) writeFileSync(join(at, 'chunks', id), data);

      const out = execFileSync(PYTHON, ['-c', PY, at, String(sizes.inlineMax), String(sizes.chunkSize)], {
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          PYTHONPATH: join(root, 'sdk/python'),
          PYTHONDONTWRITEBYTECODE: '1',
        },
        encoding: 'utf8',
        maxBuffer: 16 << 20,
      });
      // What numpy holds: the dtype's own layout and the very bytes.
      expect(JSON.parse(out)).toEqual(
        [...arrays].map(([n, e]) => [
          n,
          e.dtype,
          e.shape,
          NUMPY_DESCR[e.dtype],
          Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength).toString('hex'),
        ]),
      );
      const again = fromBinary(pb.MessageSchema, readFileSync(join(at, 'py.bin')));
      const form = (m: pb.Message) =>
        ((m.body.value as pb.RecordDict).records[0]!.record.value as pb.ArrayRecord).arrays.map((a) => ({
          ...a,
          inline: Buffer.from(a.inline).toString('hex'),
        }));
      expect(form(again)).toEqual(form(wire)); // names, dtypes, shapes, inline bytes, chunk ids
      expect(readdirSync(join(at, 'py-chunks')).sort()).toEqual([...chunks.keys()].sort());
      const back = await messageFromWire(again, (id) => readFileSync(join(at, 'py-chunks', id)));
      expectSameArrays(back.contentOrThrow.getArrayRecord('arrays')!, arrays);
    });
});
