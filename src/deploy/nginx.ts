/**
 * `pollen deploy nginx`: one nginx.conf for the cloud host in front of the SuperLink and the
 * Certificate Service. Mutual TLS must reach Pollen wherever a client certificate names the
 * caller, so the Fleet API, the Certificate Service and the Control API pass through nginx's
 * `stream` module untouched (`ssl_preread` reads only the SNI name), each connection preceded by a
 * PROXY header so Pollen sees the client's address (`--proxy-protocol-from`). Only the browser
 * dashboard terminates TLS at nginx, with the operator's own certificate.
 *
 * How a connection finds its upstream: on the shared port (443) by its SNI name
 * (fleet.DOMAIN, certs.DOMAIN, control.DOMAIN, dashboard.DOMAIN); on the Pollen ports of the port
 * map (9092, 8443, 9093) by the port, so kits whose endpoint is an IP address (no SNI) still work.
 * Unknown names are refused with a TLS alert.
 */

import { type DeployFile, file } from './files.js';
import { CERT_SERVICE_PORT, FLEET_PORT, portOf } from './port-map.js';

export const CONTROL_PORT = portOf('SuperLink', 'Control API + dashboard');

/** The names under --domain, one per API (docs/deployment.md). */
export const NGINX_NAMES = {
  fleet: 'fleet',
  certService: 'certs',
  control: 'control',
  dashboard: 'dashboard',
} as const;

export interface Endpoint {
  host: string;
  port: number;
}

export interface NginxOptions {
  /** The DNS domain the names are under: fleet.DOMAIN, certs.DOMAIN, control.DOMAIN, dashboard.DOMAIN. */
  domain: string;
  /** The address nginx listens on (the host's public or VPN address; Pollen keeps loopback). */
  listenAddress: string;
  /** The shared port, routed by SNI name. */
  sniPort: number;
  /** The Pollen ports nginx listens on, each routed to its API (kits with IP endpoints send no SNI). */
  ports: { fleet: number; certService: number; control: number };
  /** Where Pollen listens (loopback on the same host). */
  upstreams: { fleet: Endpoint; certService: Endpoint; control: Endpoint };
  /** TLS terminated for the browser dashboard: the operator's certificate, and the project root to check the Control API with. */
  dashboard?: { cert: string; key: string; rootCa: string };
  /** The source address nginx connects to Pollen from (`proxy_bind`); default: the system's choice. */
  proxyBind?: string;
  /** The stream module's file, where nginx loads it (Debian, Ubuntu); undefined when built in. */
  streamModule?: string;
  /** pid file, logs, temporary files and the internal socket under this folder; default Debian's places. */
  runtimeDir?: string;
}

/** Where Debian's and Ubuntu's libnginx-mod-stream installs the module. */
export const DEBIAN_STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';

export const nginxDefaults = (): Omit<NginxOptions, 'domain' | 'listenAddress'> => ({
  sniPort: 443,
  streamModule: DEBIAN_STREAM_MODULE,
  ports: { fleet: FLEET_PORT, certService: CERT_SERVICE_PORT, control: CONTROL_PORT },
  upstreams: {
    fleet: { host: '127.0.0.1', port: FLEET_PORT },
    certService: { host: '127.0.0.1', port: CERT_SERVICE_PORT },
    control: { host: '127.0.0.1', port: CONTROL_PORT },
  },
});

const hostPort = (e: Endpoint): string =>
  e.host.includes(':') ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;

/** Where nginx keeps its run-time files: Debian's places, or all under `runtimeDir`. */
function runtimePaths(dir: string | undefined) {
  const under = (p: string) => (dir ? `${dir}/${p}` : undefined);
  return {
    pid: under('nginx.pid') ?? '/run/nginx.pid',
    errorLog: under('error.log') ?? '/var/log/nginx/error.log',
    streamLog: under('pollen-stream.log') ?? '/var/log/nginx/pollen-stream.log',
    accessLog: under('pollen-dashboard.log') ?? '/var/log/nginx/pollen-dashboard.log',
    temp: dir ?? '/var/lib/nginx',
    socket: under('pollen-web.sock') ?? '/run/nginx-pollen-web.sock',
  };
}

/** The files of `pollen deploy nginx`: nginx.conf (a whole configuration: stream and http). */
export function nginxFiles(o: NginxOptions): DeployFile[] {
  return [file('nginx.conf', nginxConf(o))];
}

export function nginxConf(o: NginxOptions): string {
  const paths = runtimePaths(o.runtimeDir);
  const name = (api: keyof typeof NGINX_NAMES) => `${NGINX_NAMES[api]}.${o.domain}`;
  const listen = (port: number) => `    listen ${hostPort({ host: o.listenAddress, port })};`;
  // Debian's temporary folders, named as its nginx package names them.
  const temp = Object.entries({
    client_body: 'body',
    proxy: 'proxy',
    fastcgi: 'fastcgi',
    uwsgi: 'uwsgi',
    scgi: 'scgi',
  })
    .map(([directive, folder]) => `    ${directive}_temp_path ${paths.temp}/${folder};`)
    .join('\n');
  const dashboard = o.dashboard
    ? `
    # The browser dashboard: TLS ends here, with the operator's certificate. Requests go on to the
    # Control API over TLS checked against the project root; Pollen answers them as bearer-token
    # calls (no client certificate crosses this hop) and sees nginx as their peer.
    server {
        listen unix:${paths.socket} ssl http2 proxy_protocol;
        server_name ${name('dashboard')};
        ssl_certificate ${o.dashboard.cert};
        ssl_certificate_key ${o.dashboard.key};
        ssl_protocols TLSv1.2 TLSv1.3;
        set_real_ip_from unix:;
        real_ip_header proxy_protocol;
        location / {
            proxy_pass https://pollen_control_tls;
            proxy_http_version 1.1;
            proxy_set_header Host ${name('control')};
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto https;
            proxy_ssl_protocols TLSv1.3;
            proxy_ssl_server_name on;
            proxy_ssl_name ${name('control')};
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate ${o.dashboard.rootCa};
            proxy_buffering off;
            proxy_read_timeout 1h;
            client_max_body_size 64m;
        }
    }

    upstream pollen_control_tls {
        server ${hostPort(o.upstreams.control)};
        keepalive 8;
    }
`
    : '';
  return `# Generated by \`pollen deploy nginx\`: review, then install as /etc/nginx/nginx.conf and check
# with \`nginx -t\`. TLS passes through to Pollen for the Fleet API, the Certificate Service and
# the Control API: start them with --proxy-protocol-from ${proxyAddressOf(o)}, so they believe the PROXY
# header nginx sends (the client's address) and nothing else does.
# Names (SNI on port ${o.sniPort}): ${name('fleet')}, ${name('certService')}, ${name('control')}${o.dashboard ? `, ${name('dashboard')}` : ''}.

${
  o.streamModule
    ? `# The stream module is a package of its own on Debian and Ubuntu (libnginx-mod-stream).
load_module ${o.streamModule};
`
    : ''
}worker_processes auto;
pid ${paths.pid};
error_log ${paths.errorLog} notice;

events {
    worker_connections 4096;
}

stream {
    log_format pollen '$remote_addr [$time_local] sni="$ssl_preread_server_name" '
                      'port=$server_port upstream=$upstream_addr $status '
                      'sent=$bytes_sent received=$bytes_received $session_time';
    access_log ${paths.streamLog} pollen;

    upstream pollen_fleet {
        server ${hostPort(o.upstreams.fleet)};
    }
    upstream pollen_cert_service {
        server ${hostPort(o.upstreams.certService)};
    }
    upstream pollen_control {
        server ${hostPort(o.upstreams.control)};
    }
    # TLS ending at nginx (the dashboard), or a TLS alert for a name not listed here.
    upstream pollen_web {
        server unix:${paths.socket};
    }

    # Without SNI (an endpoint given as an IP address) the port decides.
    map $server_port $pollen_by_port {
        ${o.ports.fleet} pollen_fleet;
        ${o.ports.certService} pollen_cert_service;
        ${o.ports.control} pollen_control;
        default pollen_web;
    }
    map $ssl_preread_server_name $pollen_upstream {
        ${name('fleet')} pollen_fleet;
        ${name('certService')} pollen_cert_service;
        ${name('control')} pollen_control;
        "" $pollen_by_port;
        default pollen_web;
    }

    server {
${[o.sniPort, o.ports.fleet, o.ports.certService, o.ports.control].map(listen).join('\n')}
        ssl_preread on;
        # The client's address, in a PROXY header ahead of its TLS bytes (to the web socket too).
        proxy_protocol on;
        proxy_pass $pollen_upstream;${
          o.proxyBind
            ? `
        proxy_bind ${o.proxyBind};`
            : ''
        }
        proxy_connect_timeout 10s;
        # Long polls and model uploads: an idle hour before a connection is cut.
        proxy_timeout 1h;
        # Model uploads in 1 MiB reads and writes, not nginx's 16 KiB: 0.97x/0.91x of a direct
        # upload against 0.83x/0.87x (bench/nginx-upload.ts). Each busy connection holds up to
        # twice this; with thousands of sites on one nginx, lower it.
        proxy_buffer_size 1m;
    }
}

http {
    access_log ${paths.accessLog};
${temp}
    server_tokens off;

    # A name this file does not list: refused during the TLS handshake.
    server {
        listen unix:${paths.socket} ssl proxy_protocol default_server;
        ssl_reject_handshake on;
    }
${dashboard}}
`;
}

/** The address Pollen sees nginx connect from: loopback, where it runs beside Pollen. */
function proxyAddressOf(o: NginxOptions): string {
  if (o.proxyBind) return o.proxyBind;
  const hosts = new Set([o.upstreams.fleet.host, o.upstreams.certService.host, o.upstreams.control.host]);
  return [...hosts].every((h) => h.startsWith('127.')) ? '127.0.0.1' : 'NGINX_ADDRESS';
}
