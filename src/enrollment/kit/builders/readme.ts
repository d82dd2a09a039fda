import { VERSION } from '../../../version.js';
import { formatEndpoint } from '../endpoint.js';
import type { KitBuilder } from '../plan.js';
import { certFileNames, KIT_PATHS } from '../vocabulary.js';

/** readme.txt: what to do next, for this kit type. */
export const readmeBuilder: KitBuilder = {
  name: 'readme',
  build(spec, plan) {
    const { cert, key } = certFileNames(spec.name);
    const auto = spec.enrollment !== null || spec.token !== null;
    const autoSection = [
      `${auto ? '1' : '2'}. Auto-enrollment (large deployments)${auto ? ' - this kit is set up for it' : ''}:`,
      '',
      ...(spec.token
        ? ['    The enrollment token is in startup/enrollment_token (mode 0600). Keep it secret.']
        : [
            '    Put the enrollment token the project admin sent you in place:',
            '        export POLLEN_ENROLLMENT_TOKEN="<token>"',
            '    or  (umask 077; echo "<token>" > startup/enrollment_token)',
          ]),
      ...(spec.enrollment
        ? [`    The Certificate Service is ${spec.enrollment.certServiceUrl} (startup/enrollment.json).`]
        : ['    export POLLEN_CERT_SERVICE_URL=https://<certificate service host>:8443']),
      '    Then run:',
      '        ./startup/start.sh',
      '    At first start Pollen makes a private key here (it never leaves this machine), sends a',
      '    certificate request with the token, waits for approval when the policy asks for it, and',
      `    saves startup/${cert}, startup/rootCA.pem and startup/chain.pem. Renewal is automatic.`,
      '',
    ];
    const manualSection = [
      `${auto ? '2' : '1'}. Manual (small deployments, no Certificate Service):`,
      '',
      '    Copy the files the project admin sent you over a secure channel into startup/:',
      `        cp rootCA.pem ${cert} ${key} startup/`,
      `        chmod 600 startup/${key}`,
      '    Then run:',
      '        ./startup/start.sh',
      '',
    ];
    const lines = [
      `Pollen startup kit for ${spec.type} "${spec.name}" (organisation ${spec.org}${spec.role ? `, role ${spec.role}` : ''})`,
      `Endpoint: ${formatEndpoint(spec.endpoint)}`,
      ...(spec.listening ? [`Listens on: ${spec.listening.host}:${spec.listening.port}`] : []),
      `Made by Pollen ${VERSION} on ${spec.createdAt.toISOString()}`,
      '',
      'If the project admin signed the kit (startup/manifest.sig), check it first:',
      '',
      `    pollen package verify . --root-fingerprint sha256:<fingerprint the project admin gave you>`,
      '',
      'Then get a certificate, in one of two ways.',
      '',
      ...(auto ? [...autoSection, ...manualSection] : [...manualSection, ...autoSection]),
      'Logs go to log.txt; stop with ./startup/stop.sh. In a container, run',
      './startup/start.sh --foreground. Pollen is found through POLLEN_BIN (default: the',
      'installation that made this kit, else `pollen` on the PATH).',
      '',
      'Site settings: copy local/*.default (or *.sample) to the name without the suffix and edit it.',
      ...(spec.type === 'admin'
        ? ['', 'As an admin you use the certificate with the Pollen CLI and the dashboard.']
        : []),
      ...(spec.type === 'server'
        ? [
            '',
            `Open ports ${spec.endpoint.port} (Fleet API) and ${spec.endpoint.adminPort} (Control API) to the sites and admins.`,
          ]
        : []),
      '',
    ];
    plan.file(KIT_PATHS.readme, lines.join('\n'));
  },
};
