/**
 * OpenVPN configurations for a federation's VPN (`pollen deploy openvpn`), the alternative to
 * WireGuard: a hub on the SuperLink's host and one client per organisation. As with WireGuard,
 * each organisation gets a fixed address (its client-config-dir file; `ccd-exclusive` refuses any
 * other), the hub pushes no route and relays nothing between clients (no `client-to-client`; its
 * firewall drops forwarding), and a client ignores any route pushed to it: a site reaches the
 * SuperLink's VPN address and nobody else.
 *
 * No CA: each side has a self-signed Ed25519 certificate and pins the other's SHA-256 fingerprint
 * (OpenVPN 2.6 `peer-fingerprint`); TLS 1.3 only, AEAD data ciphers, and a `tls-crypt` key that
 * hides and authenticates the handshake, so the hub answers nobody without it. The certificate is
 * built here (DER, signed with Node's Ed25519, whose signatures are deterministic) so that the
 * whole generator is synchronous and reproducible from its key source.
 */
import { createHash, createPrivateKey, createPublicKey, sign } from 'node:crypto';
import { bitString, bool, ctx, octets, oid, seq, set, time, uint, utf8 } from '../pki/der.js';
import { type DeployFile, file } from './files.js';
import { OPENVPN_PORT } from './port-map.js';
import { hostAddress, type KeySource, randomKeys } from './wireguard.js';

// PKCS#8 wrapping of a raw Ed25519 private key (RFC 8410).
const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');
const ED25519 = seq(oid('1.3.101.112'));
const DAY = 86_400_000;

export interface OpenVpnIdentity {
  /** PEM certificate and PKCS#8 private key. */
  cert: string;
  key: string;
  /** SHA-256 of the certificate's DER, as `peer-fingerprint` takes it (AB:CD:…). */
  fingerprint: string;
}

const pem = (label: string, der: Buffer) =>
  `-----BEGIN ${label}-----\n${der
    .toString('base64')
    .match(/.{1,64}/g)!
    .join('\n')}\n-----END ${label}-----\n`;

/** A self-signed Ed25519 certificate for `name`, its key from 32 bytes of `keys(name)`. */
export function openvpnIdentity(
  name: string,
  keys: KeySource,
  notBefore: Date,
  validityDays: number,
): OpenVpnIdentity {
  const privateKey = createPrivateKey({
    key: Buffer.concat([PKCS8_ED25519, keys(`openvpn:${name}`)]),
    format: 'der',
    type: 'pkcs8',
  });
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  const serial = Buffer.from(keys(`openvpn-serial:${name}`).subarray(0, 16));
  serial[0]! &= 0x7f;
  const subject = seq(set(seq(oid('2.5.4.3'), utf8(name))));
  const extension = (id: string, value: Buffer) => seq(oid(id), bool(true), octets(value));
  const tbs = seq(
    ctx(0, true, uint(2)),
    uint(serial),
    ED25519,
    subject,
    seq(time(notBefore), time(new Date(notBefore.getTime() + validityDays * DAY))),
    subject,
    spki,
    ctx(
      3,
      true,
      seq(
        extension('2.5.29.19', seq()), // basicConstraints: not a CA
        extension('2.5.29.15', bitString(Buffer.from([0x80]), 7)), // keyUsage: digitalSignature
      ),
    ),
  );
  const der = seq(tbs, ED25519, bitString(sign(null, tbs, privateKey)));
  const digest = createHash('sha256').update(der).digest('hex').toUpperCase();
  return {
    cert: pem('CERTIFICATE', der),
    key: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    fingerprint: digest.match(/../g)!.join(':'),
  };
}

/** A `tls-crypt` key in OpenVPN's static key format (`openvpn --genkey tls-crypt`): 2048 bits. */
export function tlsCryptKey(keys: KeySource): string {
  const bytes = Buffer.concat(Array.from({ length: 8 }, (_, i) => keys(`tls-crypt:${i}`).subarray(0, 32)));
  return [
    '-----BEGIN OpenVPN Static key V1-----',
    ...bytes.toString('hex').match(/.{32}/g)!,
    '-----END OpenVPN Static key V1-----',
    '',
  ].join('\n');
}

/** The dotted netmask of a prefix length (24 → 255.255.255.0). */
export function netmask(bits: number): string {
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return [24, 16, 8, 0].map((shift) => (mask >>> shift) & 255).join('.');
}

export interface OpenVpnOptions {
  /** The organisations, each a client (its folder and its address, in this order). */
  orgs: string[];
  /** How organisations reach the hub: HOST or HOST:PORT (the SuperLink's public name). */
  endpoint: string;
  /** The hub's UDP port. */
  port: number;
  /** The VPN's IPv4 network: the hub takes .1, organisations .2, .3, … */
  network: string;
  /** The tun device on each side (the firewall generator's default for OpenVPN is tun0). */
  device: string;
  /** How long the certificates are valid, from `now`. */
  validityDays: number;
  now: Date;
}

export const OPENVPN_DEFAULTS = {
  port: OPENVPN_PORT,
  network: '10.78.0.0/24',
  device: 'tun0',
  validityDays: 3650,
} as const;

/** The settings both sides share: TLS 1.3 only, AEAD ciphers, no compression, the tunnel. */
const common = (device: string) => [
  `dev ${device}`,
  'dev-type tun',
  'proto udp',
  'topology subnet',
  'tls-version-min 1.3',
  'data-ciphers AES-256-GCM:CHACHA20-POLY1305',
  'persist-key',
  'persist-tun',
  'verb 3',
];

const inline = (tag: string, body: string) => [`<${tag}>`, body.trimEnd(), `</${tag}>`];

const HEADER = (what: string) =>
  [
    `# ${what}: generated by \`pollen deploy openvpn\`. Holds a private key: keep it 0600, root only.`,
    '# Run: openvpn --cd DIR --config pollen.conf (or install in /etc/openvpn/… and enable openvpn-…@pollen).',
  ].join('\n');

export interface OpenVpnPlan {
  hub: { address: string; fingerprint: string };
  orgs: { name: string; address: string; fingerprint: string }[];
  files: DeployFile[];
}

/** The hub's files (`hub/pollen.conf`, `hub/ccd/ORG`) and each organisation's (`ORG/pollen.conf`). */
export function openvpnFiles(o: OpenVpnOptions, keys: KeySource = randomKeys): OpenVpnPlan {
  const notBefore = new Date(o.now.getTime() - 60_000);
  const hub = openvpnIdentity('pollen-vpn-hub', keys, notBefore, o.validityDays);
  const mask = netmask(Number(o.network.split('/')[1]));
  const hubAddress = hostAddress(o.network, 1);
  const [host, port] = /:\d+$/.test(o.endpoint)
    ? [o.endpoint.slice(0, o.endpoint.lastIndexOf(':')), o.endpoint.slice(o.endpoint.lastIndexOf(':') + 1)]
    : [o.endpoint, String(o.port)];
  const tlsCrypt = tlsCryptKey(keys);
  const orgs = o.orgs.map((name, i) => ({
    name,
    address: hostAddress(o.network, i + 2),
    id: openvpnIdentity(name, keys, notBefore, o.validityDays),
  }));
  const hubFile = [
    HEADER('The VPN hub, on the SuperLink host'),
    'mode server',
    'tls-server',
    `port ${o.port}`,
    ...common(o.device),
    `ifconfig ${hubAddress} ${mask}`,
    'push "topology subnet"',
    '# Each organisation gets the address its ccd/ file names; an unlisted one is refused.',
    'client-config-dir ccd',
    'ccd-exclusive',
    '# No client-to-client: the hub relays nothing between organisations.',
    'keepalive 10 60',
    'dh none',
    "# Organisations are known by their certificates' fingerprints (no CA):",
    ...orgs.map((org) => `#   ${org.name}: ${org.id.fingerprint}`),
    ...inline('peer-fingerprint', orgs.map((org) => org.id.fingerprint).join('\n')),
    ...inline('cert', hub.cert),
    ...inline('key', hub.key),
    ...inline('tls-crypt', tlsCrypt),
    '',
  ].join('\n');
  const orgFile = (org: (typeof orgs)[number]) =>
    [
      HEADER(`${org.name}'s VPN client, on its SuperNode host`),
      'client',
      ...common(o.device),
      `remote ${host} ${port}`,
      'nobind',
      '# Only the SuperLink is reached through the tunnel: refuse any route the hub would push.',
      'pull-filter ignore "route "',
      'pull-filter ignore "route-ipv6"',
      'pull-filter ignore "redirect-gateway"',
      'pull-filter ignore "dhcp-option"',
      "# The hub is known by its certificate's fingerprint (no CA).",
      ...inline('peer-fingerprint', hub.fingerprint),
      ...inline('cert', org.id.cert),
      ...inline('key', org.id.key),
      ...inline('tls-crypt', tlsCrypt),
      '',
    ].join('\n');
  return {
    hub: { address: hubAddress, fingerprint: hub.fingerprint },
    orgs: orgs.map((org) => ({ name: org.name, address: org.address, fingerprint: org.id.fingerprint })),
    files: [
      file('hub/pollen.conf', hubFile, 0o600),
      ...orgs.map((org) =>
        file(
          `hub/ccd/${org.name}`,
          `# ${org.name}: its fixed VPN address\nifconfig-push ${org.address} ${mask}\n`,
        ),
      ),
      ...orgs.map((org) => file(`${org.name}/pollen.conf`, orgFile(org), 0o600)),
    ],
  };
}
