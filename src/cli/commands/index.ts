import type { Command } from 'commander';
import { registerCert } from './cert.js';
import { registerCertService } from './cert-service.js';
import { registerDemo } from './demo.js';
import { registerEnrollment } from './enrollment.js';
import { registerPackage } from './package.js';
import { registerPolicy } from './policy.js';
import { registerStart } from './start.js';
import { registerToken } from './token.js';

/** Each command group lives in its own module; this is the one place that lists them. */
export function registerCommands(program: Command): void {
  registerDemo(program);
  registerCert(program);
  registerCertService(program);
  registerEnrollment(program);
  registerToken(program);
  registerPolicy(program);
  registerPackage(program);
  registerStart(program);
}
