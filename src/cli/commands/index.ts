import type { Command } from 'commander';
import { registerAudit } from './audit.js';
import { registerBuild } from './build.js';
import { registerCert } from './cert.js';
import { registerCertService } from './cert-service.js';
import { registerConfig } from './config.js';
import { registerDemo } from './demo.js';
import { registerEnrollment } from './enrollment.js';
import { registerEnv } from './env.js';
import { registerFederation } from './federation.js';
import { registerLogin } from './login.js';
import { registerNew } from './new.js';
import { registerPackage } from './package.js';
import { registerPolicy } from './policy.js';
import { registerReady } from './ready.js';
import { registerRuns } from './runs.js';
import { registerServiceAccount } from './service-account.js';
import { registerSimulate } from './simulate.js';
import { registerStart } from './start.js';
import { registerSuperLink } from './superlink.js';
import { registerSuperNode } from './supernode.js';
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
  registerSuperLink(program);
  registerSuperNode(program);
  registerReady(program);
  registerNew(program);
  registerSimulate(program);
  registerRuns(program);
  registerBuild(program);
  registerEnv(program);
  registerConfig(program);
  registerFederation(program);
  registerLogin(program);
  registerServiceAccount(program);
  registerAudit(program);
}
