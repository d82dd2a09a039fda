import type { Command } from 'commander';
import { action, lazy } from '../command.js';
import type { DoctorOptions } from '../doctor/doctor.js';
import { certServiceOption } from '../env-options.js';

const doctor = lazy(() => import('../doctor/doctor.js'), 'doctor');

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description(
      'preflight checks of a startup kit or running components: certificates, clock, ports, disk, Python',
    )
    .argument('[kit]', 'a startup kit folder (its certificate, SuperLink, Certificate Service and state)')
    .option('--superlink <host:port>', 'check this SuperLink Fleet API (default: the kit endpoint)')
    .addOption(
      certServiceOption("check this Certificate Service and the clock against it (default: the kit's)"),
    )
    .option('--root-ca <file>', "the project root CA to verify servers against (default: the kit's)")
    .option(
      '--state-dir <dir>',
      "check that this folder is writable and has free space (default: the kit's local/)",
    )
    .option(
      '--python <path>',
      'check this interpreter for Python apps (default with a kit requirements.txt: POLLEN_PYTHON or python3)',
    )
    .addHelpText(
      'after',
      `
Examples:
  pollen doctor ./hospital-a
  pollen doctor --cert-service https://certs.example.com:8443 --root-ca rootCA.pem --json

Each check is ok, warn or fail and says what to do; the exit code is non-zero when any failed.`,
    )
    .action(action<DoctorOptions>((o, out, [kit]) => doctor({ ...o, kit }, out)));
}
