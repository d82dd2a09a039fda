import type { Command } from 'commander';
import { registerCert } from './cert.js';

/** Each command group lives in its own module; this is the one place that lists them. */
export function registerCommands(program: Command): void {
  registerCert(program);
}
