import {
  DEFAULT_CERT_SERVICE_PORT,
  SYSTEMD_COMPONENTS,
  type SystemdComponent,
  systemdFiles,
  type UnitOptions,
  unitDefaults,
  unitName,
} from '../../deploy/systemd.js';
import { PollenError } from '../../errors.js';
import type { Output } from '../output.js';
import { type DeployOutputOptions, portArgument, writeDeployFiles } from './write.js';

export interface DeploySystemdOptions extends DeployOutputOptions {
  component: string;
  /** SuperLink, SuperNode: the installed startup kit. */
  kit?: string;
  /** Certificate Service: the CA folder, its workspace, the admin API key file, its names. */
  ca?: string;
  workspace?: string;
  apiKeyFile?: string;
  hostname?: string[];
  port?: string;
  pollen?: string;
  user?: string;
  metricsAddress?: string;
  pythonEnv?: string;
  gpus?: boolean;
}

const usage = (message: string) => new PollenError('USAGE', message);

function component(name: string): SystemdComponent {
  if ((SYSTEMD_COMPONENTS as readonly string[]).includes(name)) return name as SystemdComponent;
  throw new PollenError('INVALID_ARGUMENT', `Unknown component "${name}"`, {
    hint: `Give --component ${SYSTEMD_COMPONENTS.join(', ')}.`,
  });
}

/** The unit's options from the command line: each component takes its own flags and no other's. */
export function unitOptions(o: DeploySystemdOptions): UnitOptions {
  const c = component(o.component);
  const defaults = unitDefaults(c);
  const common = {
    pollen: o.pollen ?? defaults.pollen,
    user: o.user ?? defaults.user,
    metricsAddress: o.metricsAddress ?? defaults.metricsAddress,
    environmentFile: defaults.environmentFile,
  };
  if (c === 'cert-service') {
    if (!o.ca) throw usage('--component cert-service needs --ca DIR (the CA folder on the host)');
    if (o.kit) throw usage('--kit is for a SuperLink or a SuperNode; the Certificate Service takes --ca');
    return {
      ...common,
      component: c,
      ca: o.ca,
      workspace: o.workspace ?? '/var/lib/pollen/cert-service',
      apiKeyFile: o.apiKeyFile ?? '/etc/pollen/cert-service/api_key.txt',
      hostnames: o.hostname ?? [],
      port: o.port === undefined ? DEFAULT_CERT_SERVICE_PORT : portArgument('--port', o.port),
    };
  }
  if (!o.kit) throw usage(`--component ${c} needs --kit DIR (the startup kit installed on the host)`);
  if (c === 'superlink' && (o.pythonEnv || o.gpus))
    throw usage('--python-env and --gpus are for a SuperNode (--component supernode)');
  return {
    ...common,
    component: c,
    kit: o.kit,
    ...(o.pythonEnv && { pythonEnv: o.pythonEnv }),
    ...(o.gpus && { gpus: true }),
  };
}

/** `pollen deploy systemd`: a hardened unit and its sysusers.d entry. */
export async function deploySystemd(o: DeploySystemdOptions, out: Output): Promise<void> {
  const unit = unitOptions(o);
  writeDeployFiles('systemd', o, systemdFiles(unit), out, [
    `install: cp ${unitName(unit.component)} /etc/systemd/system/ && cp pollen-${unit.component}.sysusers.conf /etc/sysusers.d/pollen.conf && systemd-sysusers && systemctl daemon-reload && systemctl enable --now ${unitName(unit.component)}`,
  ]);
}
