/**
 * `pollen pull RUN_ID`: download what a run's ServerApp saved (its artefacts) into a folder. Each
 * chunk is verified against its id as it arrives and written at its place in a temp file beside
 * the target; the whole file is checked against the artefact's SHA-256 before it is renamed into
 * place, so a file under its name is always the complete, verified artefact. A file that already
 * holds the artefact is left as it is.
 */
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { PollenError } from '../../errors.js';
import type { Artefact } from '../../gen/pollen/v1/records_pb.js';
import { downloadChunks } from '../../transport/chunk-transfer.js';
import type { ChunkTransport } from '../../transport/chunk-transport.js';
import { CHUNK_SIZE } from '../../transport/chunks.js';
import { rpc } from '../../transport/errors.js';
import { partPath } from '../../util/files.js';
import { withControl } from '../control-client.js';
import { dim, type Output } from '../output.js';
import { artefactPath, fileHash } from './artefact-files.js';
import { artefactJson, formatArtefact } from './format.js';

export interface PullOptions {
  runId: string;
  federation?: string;
  config?: string;
  /** The folder to write into (default: ./RUN_ID). */
  output?: string;
}

type PulledArtefact = ReturnType<typeof artefactJson> & { path: string; status: 'pulled' | 'unchanged' };

/** `pollen pull`: a run's artefacts, verified, into a folder. */
export async function pullArtefacts(o: PullOptions, out: Output): Promise<void> {
  const dir = resolve(o.output ?? o.runId);
  await withControl(o.federation, o, async (s) => {
    const { artefacts } = await rpc(s.control.getRunDetails({ runId: o.runId }));
    const pulled: PulledArtefact[] = [];
    for (const a of artefacts) {
      out.progress(`pulling ${a.name} (${(Number(a.size) / 1e6).toFixed(1)} MB)`);
      pulled.push(await pullOne(s.chunks, o.runId, a, dir));
    }
    out.result({ runId: o.runId, dir, artefacts: pulled }, (d) =>
      d.artefacts.length === 0
        ? `run ${d.runId} has no artefacts: its ServerApp saves them with context.artefacts.save(NAME, DATA)`
        : [
            `${d.artefacts.length} artefact${d.artefacts.length === 1 ? '' : 's'} of run ${d.runId} in ${d.dir}`,
            ...d.artefacts.map(
              (a) => `${formatArtefact(a)}${a.status === 'unchanged' ? dim('  (unchanged)') : ''}`,
            ),
          ],
    );
  });
}

async function pullOne(
  chunks: ChunkTransport,
  runId: string,
  a: Artefact,
  dir: string,
): Promise<PulledArtefact> {
  const path = artefactPath(dir, a.name);
  const info = { ...artefactJson(a), path };
  if ((await fileHash(path)) === a.hash) return { ...info, status: 'unchanged' };
  await mkdir(dirname(path), { recursive: true });
  const temp = partPath(path);
  // A model holds what the sites' data taught it: readable by its owner only, like keys.
  const file = await open(temp, 'wx', 0o600);
  try {
    try {
      // Piece i starts at i × 4 MiB (the SuperLink checks that layout); a piece repeated in the
      // artefact (zeros) arrives once and is written at each of its places.
      const places = new Map<string, number[]>();
      for (const [i, id] of a.chunkIds.entries()) places.set(id, [...(places.get(id) ?? []), i * CHUNK_SIZE]);
      await downloadChunks(
        chunks,
        a.chunkIds,
        async (id, data) => {
          for (const at of places.get(id) ?? []) await file.write(data, 0, data.byteLength, at);
        },
        { scope: { runId } },
      );
      await file.truncate(Number(a.size));
    } finally {
      await file.close();
    }
    if ((await fileHash(temp)) !== a.hash)
      throw new PollenError(
        'ARTEFACT_INVALID',
        `The downloaded bytes of "${a.name}" do not match its SHA-256 ${a.hash}`,
      );
    await rename(temp, path);
  } catch (e) {
    await rm(temp, { force: true });
    throw e;
  }
  return { ...info, status: 'pulled' };
}
