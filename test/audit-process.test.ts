import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  makePki,
  pollen,
  sshKeygen,
  startSuperLink,
  stopAll,
  tempDir,
  writeFederationConfig,
} from './support/federation.js';

const dir = tempDir('pollen-audit-proc-');
afterAll(async () => {
  await stopAll();
  dir.cleanup();
});

describe('pollen superlink and pollen audit, as processes', () => {
  it('signs a checkpoint of the head when the SuperLink stops gracefully, and verify finds it', async () => {
    const pki = await makePki(join(dir.dir, 'pki'));
    const stateDir = join(dir.dir, 'state');
    let link = await startSuperLink({ pki, stateDir });
    const config = writeFederationConfig(join(dir.dir, 'config.toml'), link.controlUrl, pki.admin);
    const key = sshKeygen(join(dir.dir, 'node-key'), 256);
    const reg = await pollen(['supernode', 'register', `${key}.pub`, '--json'], { config });
    expect(reg.code, reg.stderr).toBe(0);
    const before = await pollen(['audit', 'checkpoint', '--json'], { config });
    expect(before.json().error.code).toBe('AUDIT_NO_CHECKPOINT');
    await link.stop();
    expect(await link.exited).toMatchObject({ code: 0 });

    link = await startSuperLink({ pki, stateDir, ports: link.ports });
    const list = await pollen(['audit', 'list', '--json'], { config });
    expect(list.json().entries).toMatchObject([
      { seq: 1, action: 'Control/RegisterNode', actor: 'admin@test', auth: 'certificate', outcome: 'ok' },
    ]);
    const saved = await pollen(['audit', 'checkpoint'], { config });
    expect(JSON.parse(saved.stdout)).toMatchObject({ component: 'superlink', seq: 1 });
    const savedFile = join(dir.dir, 'checkpoint.json');
    (await import('node:fs')).writeFileSync(savedFile, saved.stdout);
    const verify = await pollen(['audit', 'verify', '--checkpoint', savedFile, '--json'], { config });
    expect(verify.code, verify.stdout).toBe(0);
    expect(verify.json()).toMatchObject({ verified: true, entries: 1, anchoredAt: 1, savedCheckpoint: 1 });
    await link.stop();
  });
});
