import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readRequirementsFile } from '../../apps/build-python.js';
import { checkEnvironment, defaultPython, requirementsMissing } from '../../apps/python-env.js';
import { type LoadedKit, loadKit } from '../../enrollment/kit.js';
import { PollenError } from '../../errors.js';
import type { Finding } from '../../observability/doctor/findings.js';
import * as f from '../../observability/doctor/findings.js';
import {
  freeBytes,
  probeHttps,
  probePort,
  probeTlsPeer,
  probeWritable,
} from '../../observability/doctor/probes.js';
import { crlOfIssuer, readSignedCrls } from '../../pki/crl.js';
import { parseCertificates } from '../../pki/verify.js';
import { bold, dim, type Output, ok } from '../output.js';
import { parseAddress } from '../participant-tls.js';

export interface DoctorOptions {
  kit?: string;
  superlink?: string;
  certService?: string;
  rootCa?: string;
  stateDir?: string;
  python?: string;
  /** The local clock (tests skew it). */
  now?: () => Date;
}

/** `pollen doctor [KIT]`: preflight checks of a kit or of running components, each with what to do. */
export async function doctor(o: DoctorOptions, out: Output): Promise<void> {
  const now = o.now ?? (() => new Date());
  const kit = o.kit ? loadKit(o.kit) : undefined;
  const rootPath = o.rootCa ?? kit?.paths.rootCa;
  if (!kit && !o.superlink && !o.certService && !o.stateDir)
    throw new PollenError(
      'USAGE',
      'Give a kit folder, or --superlink / --cert-service / --state-dir to check',
      {
        hint: 'pollen doctor ./site-kit checks a site; pollen doctor --cert-service https://HOST:8443 --root-ca rootCA.pem a service.',
      },
    );
  const root = rootPath ? readFileSync(rootPath, 'utf8') : undefined;
  const findings: Finding[] = [];
  const client = kit && existsSync(kit.paths.cert) ? kitCertificate(kit) : undefined;

  if (kit) findings.push(...kitFindings(kit, root as string, now()));
  const superlink =
    o.superlink ??
    (kit && kit.config.type !== 'server'
      ? `${kit.config.endpoint.host}:${kit.config.endpoint.port}`
      : undefined);
  if (superlink)
    findings.push(
      ...(await serverFindings('superlink', 'The SuperLink Fleet API', superlink, root, now, client)),
    );
  const certService = o.certService ?? kit?.enrollment?.certServiceUrl;
  if (certService) findings.push(...(await certServiceFindings(certService, root, now, kit)));
  const stateDir =
    o.stateDir ?? (kit ? (existsSync(join(kit.dir, 'local')) ? join(kit.dir, 'local') : kit.dir) : undefined);
  if (stateDir) {
    findings.push(f.writableFinding('store.writable', stateDir, probeWritable(stateDir)));
    findings.push(f.diskFinding('disk.space', stateDir, freeBytes(stateDir)));
  }
  const requirements = kit ? join(kit.startupDir, 'requirements.txt') : undefined;
  if (o.python || (requirements && existsSync(requirements)))
    findings.push(
      await pythonFinding(
        o.python ?? defaultPython(),
        requirements && existsSync(requirements) ? readRequirementsFile(requirements) : [],
      ),
    );

  const document = { ok: !f.anyFailed(findings), findings };
  if (f.anyFailed(findings)) {
    const failed = findings.filter((x) => x.status === 'fail').length;
    throw out.failure(
      document,
      new PollenError('DOCTOR_FOUND_FAILURES', `${failed} check${failed === 1 ? '' : 's'} failed`),
      render,
    );
  }
  out.result(document, render);
}

const MARK = { ok: ok('✓'), warn: '!', fail: '✗' } as const;

function render(d: { findings: Finding[] }): string[] {
  return d.findings.flatMap((x) => [
    `${MARK[x.status]} ${x.status === 'ok' ? x.message : bold(x.message)}  ${dim(x.id)}`,
    ...(x.fix ? [`    ${dim('→')} ${x.fix}`] : []),
  ]);
}

function kitCertificate(kit: LoadedKit): { cert: string; key: string } {
  return { cert: readFileSync(kit.paths.cert, 'utf8'), key: readFileSync(kit.paths.key, 'utf8') };
}

/** The kit's own certificate: there, chained to the root, in date. */
function kitFindings(kit: LoadedKit, root: string, now: Date): Finding[] {
  if (!existsSync(kit.paths.cert))
    return [
      {
        id: 'kit.certificate',
        status: 'fail',
        message: `The kit ${kit.dir} holds no certificate yet`,
        fix: `Enroll it: pollen start ${kit.dir} --enroll-only (with its enrollment token)`,
      },
    ];
  const cert = readFileSync(kit.paths.cert, 'utf8');
  const chain = existsSync(kit.paths.chain) ? readFileSync(kit.paths.chain, 'utf8') : '';
  const [leaf] = parseCertificates(cert);
  return [
    f.chainFinding('kit.chain', "The kit's certificate", cert, chain, root, now),
    ...(leaf ? [f.expiryFinding('kit.expiry', "The kit's certificate", leaf, now)] : []),
  ];
}

/** A TLS server: reachable, its certificate naming the address, chained to the root, in date. */
async function serverFindings(
  id: string,
  what: string,
  address: string,
  root: string | undefined,
  now: () => Date,
  client?: { cert: string; key: string },
): Promise<Finding[]> {
  const { host, port } = parseAddress(address, `--${id}`);
  const unreachable = await probePort(host, port);
  const reach = f.portFinding(`${id}.port`, what, `${host}:${port}`, unreachable);
  if (unreachable) return [reach];
  const tls = await probeTlsPeer(host, port, client);
  if (tls instanceof Error)
    return [
      reach,
      {
        id: `${id}.tls`,
        status: 'fail',
        message: `No TLS handshake with ${what}: ${tls.message}`,
        fix: 'Check that the address is the TLS port of the component (not a plaintext or metrics port).',
      },
    ];
  const [leaf] = parseCertificates(tls.pem);
  return [
    reach,
    f.serverNameFinding(`${id}.name`, host, tls.peer),
    ...(root ? [f.chainFinding(`${id}.chain`, `${what}'s certificate`, tls.pem, '', root, now())] : []),
    ...(leaf ? [f.expiryFinding(`${id}.expiry`, `${what}'s certificate`, leaf, now())] : []),
  ];
}

/** The Certificate Service as a server, the clock against it, and its CRL for the kit's certificate. */
async function certServiceFindings(
  url: string,
  root: string | undefined,
  now: () => Date,
  kit?: LoadedKit,
): Promise<Finding[]> {
  const u = new URL(url);
  const found = await serverFindings(
    'cert-service',
    'The Certificate Service',
    `${u.hostname}:${u.port || 443}`,
    root,
    now,
    undefined,
  );
  if (found.some((x) => x.status === 'fail' && x.id === 'cert-service.port') || !root) return found;
  const answer = await probeHttps(new URL('/v1/crl', u).toString(), root);
  if (answer instanceof Error)
    return [
      ...found,
      {
        id: 'clock.skew',
        status: 'warn',
        message: `No answer from ${url}: ${answer.message}`,
        fix: 'Check the service URL and its TLS certificate.',
      },
    ];
  found.push(
    answer.date
      ? f.clockFinding('clock.skew', 'the Certificate Service', answer.date, now())
      : {
          id: 'clock.skew',
          status: 'warn',
          message: 'The Certificate Service sent no Date',
          fix: 'Check that the URL reaches the Certificate Service itself.',
        },
  );
  if (kit && existsSync(kit.paths.cert)) {
    const issuers = [
      new X509Certificate(root),
      ...parseCertificates(existsSync(kit.paths.chain) ? readFileSync(kit.paths.chain, 'utf8') : ''),
    ];
    // Lines of 64 characters and no empty one (an empty line ends a PEM block early).
    const pem = `-----BEGIN X509 CRL-----\n${answer.body
      .toString('base64')
      .match(/.{1,64}/g)
      ?.join('\n')}\n-----END X509 CRL-----\n`;
    const crls = await readSignedCrls(
      answer.body.toString('latin1').includes('BEGIN') ? answer.body.toString('latin1') : pem,
      issuers,
      'The revocation list',
    ).catch((e: Error) => e);
    const [leaf] = parseCertificates(readFileSync(kit.paths.cert, 'utf8'));
    // Checked against the list of the intermediate that issued it, as OpenSSL does.
    if (leaf) {
      const crl = crls instanceof Error ? crls : (crlOfIssuer(crls, leaf) ?? 'missing');
      found.push(f.revocationFinding('kit.revocation', "The kit's certificate", leaf, crl, now()));
    }
  }
  return found;
}

async function pythonFinding(python: string, requirements: string[]): Promise<Finding> {
  const check = await checkEnvironment(python, requirements).catch((e: Error) => e);
  if (check instanceof Error)
    return {
      id: 'python.env',
      status: 'fail',
      message: `${python} cannot be run: ${check.message}`,
      fix: 'Install Python 3 or point POLLEN_PYTHON / --python at the interpreter of the apps.',
    };
  if (!check.ok) {
    const e = requirementsMissing(check, 'this site');
    return { id: 'python.env', status: 'fail', message: e.message, fix: e.hint };
  }
  return {
    id: 'python.env',
    status: 'ok',
    message: `${check.executable} (Python ${check.pythonVersion}) has what the apps need`,
  };
}
