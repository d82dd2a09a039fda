/**
 * The Kubernetes manifests (deploy/kubernetes, what `pollen deploy kubernetes` writes for the
 * sample project): every overlay renders (test/support/kustomize.ts) and every object passes the
 * Kubernetes schemas offline (kubernetes-models: types, required fields, enums, formats), and the
 * properties the deployment relies on hold — one SuperLink replaced by Recreate, secrets mounted
 * read-only, a token Secret per organisation, probes on the ops listener, NetworkPolicies that
 * open exactly the port map's ports.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { Service } from 'kubernetes-models/v1/Service';
import { describe, expect, it } from 'vitest';
import { DEPLOY_DIR } from '../scripts/gen-deploy-samples.js';
import { type HostRole, metricsPort, PORT_MAP } from '../src/deploy/port-map.js';
import { pollenInProcess, tempDir } from './support/cli.js';
import { kustomize, type Rendered } from './support/kustomize.js';

const ROOT = join(DEPLOY_DIR, 'kubernetes');
const OVERLAYS = readdirSync(join(ROOT, 'overlays'));
const rendered = new Map(OVERLAYS.map((o) => [o, kustomize(join(ROOT, 'overlays', o))]));
const all = [...rendered.values()].flat();

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  Deployment,
  StatefulSet,
  NetworkPolicy,
  Namespace,
  PersistentVolumeClaim,
  Service,
};

const ofKind = (objects: Rendered[], kind: string) => objects.filter((o) => o.kind === kind);
const workloads = (objects: Rendered[]) =>
  objects.filter((o) => o.kind === 'Deployment' || o.kind === 'StatefulSet');
const containersOf = (w: Rendered): any[] => [
  ...(w.spec.template.spec.initContainers ?? []),
  ...w.spec.template.spec.containers,
];
const SITES = OVERLAYS.filter((o) => o !== 'cloud');

describe('deploy/kubernetes', () => {
  it('has the cloud overlay, one per organisation and a GPU site', () => {
    expect(OVERLAYS.sort()).toEqual(['cloud', 'gpu-lab', 'hospital-a', 'hospital-b']);
  });

  it.each(OVERLAYS)(
    'overlays/%s: every object passes its Kubernetes schema, in the overlay’s namespace',
    (o) => {
      const objects = rendered.get(o)!;
      expect(objects.length).toBeGreaterThan(3);
      const ns = ofKind(objects, 'Namespace')[0]!.metadata.name;
      for (const obj of objects) {
        const Model = MODELS[obj.kind];
        expect(Model, `no schema for ${obj.kind}`).toBeDefined();
        expect(() => new Model!(obj as never).validate(), `${obj.kind} ${obj.metadata.name}`).not.toThrow();
        if (obj.kind !== 'Namespace') expect(obj.metadata.namespace).toBe(ns);
      }
    },
  );

  it('the schemas catch a wrong value (the check is not empty)', () => {
    const ss = structuredClone(ofKind(rendered.get('hospital-a')!, 'StatefulSet')[0]!);
    ss.spec.replicas = 'two';
    expect(() => new StatefulSet(ss as never).validate()).toThrow(/replicas must be integer/);
  });

  it('runs one SuperLink, replaced with Recreate (never two on one store)', () => {
    const [superlink] = ofKind(rendered.get('cloud')!, 'Deployment').filter(
      (d) => d.metadata.name === 'pollen-superlink',
    );
    expect(superlink!.spec.replicas).toBe(1);
    expect(superlink!.spec.strategy).toEqual({ type: 'Recreate' });
    // Its store lives on one ReadWriteOnce volume.
    expect(superlink!.spec.template.spec.volumes).toContainEqual({
      name: 'state',
      persistentVolumeClaim: { claimName: 'pollen-superlink-state' },
    });
  });

  it('runs Certificate Service replicas on PostgreSQL, the password from a Secret', () => {
    const [cs] = ofKind(rendered.get('cloud')!, 'Deployment').filter(
      (d) => d.metadata.name === 'pollen-cert-service',
    );
    expect(cs!.spec.replicas).toBeGreaterThan(1);
    const [c] = cs!.spec.template.spec.containers;
    expect(c.args.slice(c.args.indexOf('--database'), c.args.indexOf('--database') + 2)).toEqual([
      '--database',
      '$(POLLEN_DATABASE_URL)',
    ]);
    const fromSecret = (name: string) =>
      c.env.find((e: { name: string }) => e.name === name)?.valueFrom?.secretKeyRef;
    expect(fromSecret('POLLEN_DATABASE_URL')).toEqual({ name: 'pollen-cert-service-database', key: 'url' });
    expect(fromSecret('PGPASSWORD')).toEqual({ name: 'pollen-cert-service-database', key: 'password' });
    expect(JSON.stringify(all)).not.toMatch(/postgres:\/\/[^@"]*:[^@"]*@/);
  });

  it('mounts every secret read-only, and nothing else from a Secret is writable', () => {
    let mounts = 0;
    for (const w of workloads(all)) {
      const secrets = new Set(
        w.spec.template.spec.volumes
          .filter((v: { secret?: unknown }) => v.secret)
          .map((v: { name: string; secret: { defaultMode: number } }) => {
            expect(v.secret.defaultMode).toBe(0o440);
            return v.name;
          }),
      );
      for (const c of containersOf(w))
        for (const m of c.volumeMounts)
          if (secrets.has(m.name)) {
            mounts++;
            expect(m.readOnly, `${w.metadata.name}/${c.name} ${m.mountPath}`).toBe(true);
          }
    }
    expect(mounts).toBeGreaterThanOrEqual(2 + 2 * SITES.length + 2);
  });

  it('gives each organisation its own StatefulSet, namespace and token Secret, shared with no one', () => {
    const secretNames: string[] = [];
    for (const site of SITES) {
      const objects = rendered.get(site)!;
      const [ss] = ofKind(objects, 'StatefulSet');
      expect(ss!.metadata.name).toBe(site);
      expect(ss!.metadata.namespace).toBe(`pollen-${site}`);
      // Pods SITE-1 … SITE-N, the names `pollen token batch -n N --prefix SITE` gives its tokens.
      expect(ss!.spec.ordinals).toEqual({ start: 1 });
      const secrets = ss!.spec.template.spec.volumes
        .filter((v: { secret?: unknown }) => v.secret)
        .map((v: { secret: { secretName: string } }) => v.secret.secretName);
      expect(secrets).toEqual([`pollen-tokens-${site}`]);
      secretNames.push(...secrets);
      const [enroll] = ss!.spec.template.spec.initContainers;
      // The pod's ordinal, from its host name, picks the token.
      expect(enroll.args[0]).toContain('ORDINAL="$' + '{HOSTNAME##*-}"');
      expect(enroll.env).toContainEqual({ name: 'ORG', value: site });
    }
    expect(new Set(secretNames).size).toBe(SITES.length);
    // The cloud side mounts no organisation's tokens.
    expect(JSON.stringify(rendered.get('cloud'))).not.toContain('pollen-tokens-');
  });

  it('runs every container unprivileged on a read-only root file system, with requests and limits', () => {
    for (const w of workloads(all)) {
      const pod = w.spec.template.spec;
      expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 10001 });
      expect(pod.automountServiceAccountToken).toBe(false);
      for (const c of containersOf(w)) {
        expect(c.securityContext).toEqual({
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          runAsNonRoot: true,
          capabilities: { drop: ['ALL'] },
        });
        expect(Object.keys(c.resources.requests).sort()).toEqual(expect.arrayContaining(['cpu', 'memory']));
        expect(Object.keys(c.resources.limits).sort()).toEqual(expect.arrayContaining(['cpu', 'memory']));
      }
    }
  });

  it('gives the GPU site NVIDIA GPUs and its image, and the others none', () => {
    for (const site of SITES) {
      const [ss] = ofKind(rendered.get(site)!, 'StatefulSet');
      const main = ss!.spec.template.spec.containers[0];
      if (site === 'gpu-lab') {
        expect(main.resources.limits['nvidia.com/gpu']).toBe('1');
        expect(main.image).toMatch(/\/pollen-supernode-gpu:/);
        expect(main.env).toContainEqual({ name: 'POLLEN_RESOURCES', value: 'gpu=1' });
      } else {
        expect(main.resources.limits['nvidia.com/gpu']).toBeUndefined();
        expect(main.image).toMatch(/\/pollen-supernode:/);
      }
    }
  });

  it('probes /healthz and /readyz on the ops listener, which listens on the pod address at the port map’s port', () => {
    const component = {
      superlink: 'SuperLink',
      'cert-service': 'Certificate Service',
      supernode: 'SuperNode',
    } as const;
    let probed = 0;
    for (const w of workloads(all)) {
      const name = w.metadata.labels!['app.kubernetes.io/component'] as keyof typeof component;
      const port = metricsPort(component[name]);
      for (const c of w.spec.template.spec.containers) {
        probed++;
        expect(c.ports).toContainEqual({ name: 'ops', containerPort: port });
        expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'ops' });
        expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'ops' });
        expect(c.env).toContainEqual({ name: 'POLLEN_METRICS_ADDRESS', value: `0.0.0.0:${port}` });
      }
    }
    expect(probed).toBe(2 + SITES.length);
  });

  describe('NetworkPolicies follow the port map', () => {
    const policy = (objects: Rendered[], name: string) =>
      ofKind(objects, 'NetworkPolicy').find((p) => p.metadata.name === name)!;
    const ports = (rules: any[]) => rules.flatMap((r) => r.ports.map((p: { port: number }) => p.port)).sort();
    // From the map itself: Pollen's TCP listeners on the role's hosts that leave the loopback,
    // and the ops listener (probes, Prometheus).
    const expectedIngress = (role: HostRole) =>
      PORT_MAP.filter(
        (r) =>
          r.host === role &&
          r.protocol === 'tcp' &&
          (r.exposed !== 'loopback' || r.name === 'metrics and health'),
      )
        .map((r) => r.port)
        .sort();
    const expectedEgress = (role: HostRole) =>
      [
        ...new Set(PORT_MAP.filter((r) => r.from.includes(role) && r.protocol === 'tcp').map((r) => r.port)),
      ].sort();

    it.each([
      ['cloud', 'superlink', 'pollen-superlink'],
      ['cloud', 'cert-service', 'pollen-cert-service'],
      ['hospital-a', 'site', 'pollen-supernode'],
    ] as const)('overlays/%s: %s pods accept and open exactly the map’s ports', (overlay, role, name) => {
      const p = policy(rendered.get(overlay)!, name);
      expect(p.spec.policyTypes).toEqual(['Ingress', 'Egress']);
      expect(ports(p.spec.ingress)).toEqual(expectedIngress(role));
      const extra = role === 'cert-service' ? [5432] : []; // its PostgreSQL
      expect(ports(p.spec.egress)).toEqual([...expectedEgress(role), ...extra].sort());
      // Loopback-only APIs (ServerAppIo, ClientAppIo) are never opened.
      expect(JSON.stringify(p.spec.ingress)).not.toMatch(/"port":(9091|9094)\b/);
    });

    it('lets only SuperNodes of the sites (and the VPN) reach the Fleet API, only monitoring the ops listeners', () => {
      const p = policy(rendered.get('cloud')!, 'pollen-superlink');
      const fleet = p.spec.ingress.find((r: { ports: { port: number }[] }) => r.ports[0]!.port === 9092);
      expect(fleet.from).toContainEqual({
        namespaceSelector: {
          matchExpressions: [
            {
              key: 'kubernetes.io/metadata.name',
              operator: 'In',
              values: SITES.map((s) => `pollen-${s}`).sort(),
            },
          ],
        },
        podSelector: {
          matchLabels: { 'app.kubernetes.io/name': 'pollen', 'app.kubernetes.io/component': 'supernode' },
        },
      });
      expect(fleet.from).toContainEqual({ ipBlock: { cidr: '10.77.0.0/24' } });
      const ops = p.spec.ingress.find((r: { ports: { port: number }[] }) => r.ports[0]!.port === 9095);
      expect(ops.from).toEqual([
        {
          namespaceSelector: {
            matchExpressions: [
              { key: 'kubernetes.io/metadata.name', operator: 'In', values: ['monitoring'] },
            ],
          },
        },
      ]);
      // Public APIs take anyone.
      const control = p.spec.ingress.find((r: { ports: { port: number }[] }) => r.ports[0]!.port === 9093);
      expect(control.from).toBeUndefined();
    });

    it.each(OVERLAYS)('overlays/%s denies everything else and allows DNS', (o) => {
      expect(policy(rendered.get(o)!, 'pollen-default-deny').spec).toEqual({
        podSelector: {},
        policyTypes: ['Ingress', 'Egress'],
      });
      expect(ports(policy(rendered.get(o)!, 'pollen-allow-dns').spec.egress)).toEqual([53, 53]);
    });
  });
});

describe('pollen deploy kubernetes', () => {
  const t = tempDir('pollen-k8s-cli-');
  const base = [
    'deploy',
    'kubernetes',
    '--superlink-host',
    'superlink.example.org',
    '--cert-service-url',
    'https://certs.example.org:8443',
  ];

  it('writes the overlays it reports, one JSON document', async () => {
    const out = join(t.dir, 'k8s');
    const r = await pollenInProcess(
      [
        ...base,
        '--database',
        'postgres://pollen@db:5432/pollen',
        '--org',
        'site-a',
        '--replicas',
        '3',
        '-o',
        out,
        '--json',
      ],
      { clean: true },
    );
    expect(r.code, r.stderr).toBe(0);
    const doc = r.json<{ files: { path: string }[] }>();
    expect(doc.files.map((f) => f.path)).toContain('overlays/site-a/supernodes.yaml');
    const [ss] = ofKind(kustomize(join(out, 'overlays/site-a')), 'StatefulSet');
    expect(ss!.spec.replicas).toBe(3);
  });

  it.each([
    [['--database', 'postgres://pollen:secret@db/pollen', '--org', 'a'], /--database holds a password/],
    [['--database', 'postgres://pollen@db/pollen', '--org', 'Site_A'], /not usable as a Kubernetes name/],
    [['--database', 'postgres://pollen@db/pollen'], /at least one organisation/],
  ])('refuses %j with a precise message', async (args, message) => {
    const r = await pollenInProcess([...base, ...args, '-o', join(t.dir, 'bad'), '--json'], { clean: true });
    expect(r.code).not.toBe(0);
    const doc = r.json<{ ok: boolean; error: { code: string; message: string; hint: string } }>();
    expect(doc.ok).toBe(false);
    expect(doc.error.message).toMatch(message);
    expect(doc.error.hint).toBeTruthy();
  });
});
