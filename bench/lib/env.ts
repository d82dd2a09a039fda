import { execFileSync } from 'node:child_process';
import { cpus, loadavg, totalmem } from 'node:os';

/** What a bench result must say about where it was measured. */
export interface MachineInfo {
  date: string;
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  loadAverage1m: number;
  node: string;
  openssl: string;
  platform: string;
  commit: string;
}

function quiet(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

export function machineInfo(): MachineInfo {
  const c = cpus();
  const commit = quiet('git', ['rev-parse', '--short', 'HEAD']);
  const dirty = quiet('git', ['status', '--porcelain', '--untracked-files=no']);
  return {
    date: new Date().toISOString(),
    cpus: c.length,
    cpuModel: c[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    loadAverage1m: Math.round(loadavg()[0]! * 100) / 100,
    node: process.version,
    openssl: quiet('openssl', ['version']),
    platform: `${process.platform} ${process.arch}`,
    commit: commit === 'unknown' ? commit : `${commit}${dirty && dirty !== 'unknown' ? ' (modified)' : ''}`,
  };
}

/** Parse the sign/s column of `openssl speed ecdsapNNN` (the last line naming the curve). */
export function parseOpensslSpeedSign(output: string, curve = 'nistp256'): { sign: number; verify: number } {
  const line = output
    .split('\n')
    .filter((l) => l.includes(`(${curve})`))
    .pop();
  const nums = line?.match(/[\d.]+/g)?.map(Number) ?? [];
  // "256 bits ecdsa (nistp256)   0.0000s   0.0001s  50318.3  16050.7"
  const [sign, verify] = nums.slice(-2);
  if (!line || sign === undefined || verify === undefined)
    throw new Error(`cannot find the ${curve} line in openssl speed output:\n${output.slice(-500)}`);
  return { sign, verify };
}
