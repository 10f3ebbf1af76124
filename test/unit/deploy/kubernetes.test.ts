/**
 * deploy/kubernetes/, checked without a cluster: the base and the example
 * overlay rendered by `kubectl kustomize` (what `kubectl apply -k` would send),
 * every object validated against Kubernetes' own schemas (kubernetes-models,
 * and @kubernetes-models/prometheus-operator for the ServiceMonitor), then what
 * those schemas cannot know: that the probes, ports and files the manifests
 * name are the proxy's, that the pod runs locked down, that the grace period
 * covers the drain, that the Secret holds placeholders only, and that the
 * labels and selectors tie the objects together.
 *
 * The schemas accept fields they do not know, as Kubernetes does without strict
 * field validation: a misspelled key that matters is caught by the checks below
 * finding it absent.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { copyFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, Secret, Service, type IContainer, type IContainerPort } from 'kubernetes-models/v1';
import { parseConfig } from '../../../src/config/load.js';
import { createLogger } from '../../../src/logging/logger.js';
import { startStrangler } from '../../../src/main.js';
import { isPostgresSpec } from '../../../src/store/open.js';

const run = promisify(execFile);
const ROOT = new URL('../../../', import.meta.url);
const fromRoot = (relative: string) => new URL(relative, ROOT).pathname;
const KUBERNETES_DIR = fromRoot('deploy/kubernetes');
const OVERLAY = 'overlays/example';
const NAMESPACE = 'ci';
const SECRET_KEYS = ['STRANGLER_ADMIN_TOKEN', 'STRANGLER_STORE', 'TASKCLUSTER_ACCESS_TOKEN', 'TASKCLUSTER_CLIENT_ID'];
const PLACEHOLDER = 'REPLACE_ME';

/** Every kind the manifests may hold, with the model that validates it: an object of any other kind fails the test. */
const MODELS = [ConfigMap, Secret, Service, Deployment, PodDisruptionBudget, ServiceMonitor];
type Model = InstanceType<(typeof MODELS)[number]>;

interface Rendered {
  objects: Model[];
  of<M extends (typeof MODELS)[number]>(model: M): Array<InstanceType<M>>;
  one<M extends (typeof MODELS)[number]>(model: M): InstanceType<M>;
}

function modelled(object: { apiVersion?: string; kind?: string; [field: string]: unknown }): Model {
  // kustomize folds a long Secret value's base64 over lines; the API server's decoder (Go's) skips the
  // line breaks, the schema's "byte" format does not.
  if (object.kind === 'Secret' && object.data) object = { ...object, data: Object.fromEntries(Object.entries(object.data as Record<string, string>).map(([k, v]) => [k, v.replace(/\s+/g, '')])) };
  const Kind = MODELS.find((m) => m.apiVersion === object.apiVersion && m.kind === object.kind);
  if (Kind === undefined) throw new Error(`no schema here for ${object.apiVersion}/${object.kind}: add its model to MODELS`);
  const model = new Kind(object as never);
  model.validate();
  return model;
}

async function kustomize(dir: string): Promise<Rendered> {
  const { stdout } = await run('kubectl', ['kustomize', dir], { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 });
  const objects = parseAllDocuments(stdout).map((doc) => modelled(doc.toJS() as { apiVersion?: string; kind?: string }));
  const of = <M extends (typeof MODELS)[number]>(model: M) => objects.filter((o): o is InstanceType<M> => o instanceof model);
  const one = <M extends (typeof MODELS)[number]>(model: M) => {
    const found = of(model);
    expect(found, `one ${model.kind}`).to.have.length(1);
    return found[0]!;
  };
  return { objects, of, one };
}

/** kubectl's embedded kustomize version, or a message saying what is missing and how to get it. */
async function kustomizeVersion(): Promise<{ major: number; text: string } | { problem: string }> {
  let stdout: string;
  try {
    ({ stdout } = await run('kubectl', ['version', '--client', '-o', 'json'], { timeout: 30_000 }));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { problem: 'kubectl is not installed: bash scripts/install-system-deps.sh kubectl' };
    throw error;
  }
  const version = JSON.parse(stdout) as { clientVersion?: { gitVersion?: string }; kustomizeVersion?: string };
  const major = Number(/^v(\d+)\./.exec(version.kustomizeVersion ?? '')?.[1] ?? 0);
  if (major >= 4) return { major, text: version.kustomizeVersion! };
  return {
    problem:
      `kubectl ${version.clientVersion?.gitVersion ?? '(unknown)'} embeds kustomize ${version.kustomizeVersion ?? '(older than v4)'}; deploy/kubernetes needs ` +
      'kustomize v4 or later (kubectl 1.21 or later; Debian 12\'s kubernetes-client is 1.20): install kubectl from https://kubernetes.io/docs/tasks/tools/',
  };
}

/** The final stage's ENV of the repository's Dockerfile: what the container starts with before the manifests add theirs. */
function dockerfile(): { env: Record<string, string>; user: string } {
  const text = readFileSync(fromRoot('Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const lines = text.split('\n').map((l) => l.trim());
  const finalStage = lines.slice(lines.map((l) => /^FROM\s/i.test(l)).lastIndexOf(true));
  const env: Record<string, string> = {};
  for (const line of finalStage.filter((l) => /^ENV\s/i.test(l))) {
    for (const [, key, value] of line.slice(4).matchAll(/([A-Z_][A-Z0-9_]*)=(\S*)/gi)) env[key!] = value!;
  }
  const user = finalStage.filter((l) => /^USER\s/i.test(l)).pop()?.slice(5).trim() ?? 'root';
  return { env, user };
}

/** How long `serve` lets requests in flight finish after SIGTERM: main.ts's default, which cli.ts does not override. */
function drainLimitSeconds(): number {
  const main = readFileSync(fromRoot('src/main.ts'), 'utf8');
  const cli = readFileSync(fromRoot('src/cli.ts'), 'utf8');
  expect(cli, 'serve passes no drainTimeoutMs of its own (else read it there)').not.to.match(/drainTimeoutMs/);
  const match = /drain\(proxyServer, options\.drainTimeoutMs \?\? ([\d_]+)\)/.exec(main);
  expect(match, "src/main.ts's drain call and its default limit").not.to.equal(null);
  return Number(match![1]!.replaceAll('_', '')) / 1000;
}

/** CPU in cores, memory in bytes, from the quantities the manifests use. */
function quantity(text: string | number): number {
  const m = /^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi)?$/.exec(String(text));
  if (m === null) throw new Error(`unexpected quantity ${text}`);
  const scale = { m: 1e-3, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30 }[m[2] as 'm' | 'Ki' | 'Mi' | 'Gi'] ?? 1;
  return Number(m[1]) * scale;
}

function isSubset(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  return selector !== undefined && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

function decoded(secret: Secret): Record<string, string> {
  return Object.fromEntries(Object.entries(secret.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
}

describe('deploy/kubernetes (kubectl kustomize, Kubernetes schemas)', function () {
  this.timeout(60_000);
  let work: string;
  let base: Rendered;
  let overlay: Rendered;

  before(async function () {
    const version = await kustomizeVersion();
    if ('problem' in version) throw new Error(version.problem);
    // A copy, with the overlay's secrets.env made from its example, as a user would before `kubectl apply -k`.
    work = mkdtempSync(path.join(tmpdir(), 'strangler-kubernetes-'));
    cpSync(KUBERNETES_DIR, work, { recursive: true });
    copyFileSync(path.join(work, OVERLAY, 'secrets.env.example'), path.join(work, OVERLAY, 'secrets.env'));
    base = await kustomize(path.join(work, 'base'));
    overlay = await kustomize(path.join(work, OVERLAY));
  });
  after(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('renders the base and the overlay into the same objects, each valid against its Kubernetes schema', () => {
    const names = (r: Rendered) => r.objects.map((o) => `${o.kind}/${o.metadata?.name?.replace(/-[a-z0-9]{10}$/, '-<hash>')}`).sort();
    const expected = ['ConfigMap/strangler-proxy-routes', 'Deployment/strangler-proxy', 'PodDisruptionBudget/strangler-proxy', 'Secret/strangler-proxy-<hash>', 'Service/strangler-proxy', 'Service/strangler-proxy-admin', 'ServiceMonitor/strangler-proxy'];
    expect(names(base)).to.deep.equal(expected);
    expect(names(overlay)).to.deep.equal(expected);
    // The schemas have teeth: the same Deployment with a wrong type or value is refused.
    const deployment = overlay.one(Deployment).toJSON() as Deployment;
    expect(() => modelled({ ...deployment, spec: { ...deployment.spec!, replicas: 'three' as never } })).to.throw(/replicas must be integer/);
    const pod = deployment.spec!.template.spec!;
    expect(() => modelled({ ...deployment, spec: { ...deployment.spec!, template: { ...deployment.spec!.template, spec: { ...pod, securityContext: { seccompProfile: { type: 'Permissive' as never } } } } } })).to.throw(
      /seccompProfile\/type must be equal to one of the allowed values/,
    );
  });

  it('the overlay puts everything in its namespace, with its image, routes and secrets', () => {
    for (const o of overlay.objects) expect(o.metadata?.namespace, `${o.kind}/${o.metadata?.name}`).to.equal(NAMESPACE);
    const image = overlay.one(Deployment).spec!.template.spec!.containers[0]!.image!;
    expect(image).to.match(/^[a-z0-9.-]+\/.+:[\w.-]+$/);
    expect(image, 'a pinned tag, never latest').not.to.match(/:latest$/);
    expect(overlay.one(ConfigMap).data!['routes.yaml']).to.equal(readFileSync(path.join(KUBERNETES_DIR, OVERLAY, 'routes.yaml'), 'utf8'));
  });

  for (const which of ['base', 'overlay'] as const) {
    it(`${which}: the ConfigMap's routes.yaml passes the proxy's own validation`, () => {
      const rendered = which === 'base' ? base : overlay;
      const table = parseConfig(Buffer.from(rendered.one(ConfigMap).data!['routes.yaml']!), 'routes.yaml');
      expect(table.legacy.url).to.match(/^http:\/\/buildbot\./);
    });

    it(`${which}: the Secret holds every key the proxy reads from it, as placeholders only`, () => {
      const rendered = which === 'base' ? base : overlay;
      const values = decoded(rendered.one(Secret));
      expect(Object.keys(values).sort()).to.deep.equal(SECRET_KEYS);
      for (const key of SECRET_KEYS.filter((k) => k !== 'STRANGLER_STORE')) expect(values[key], key).to.equal(PLACEHOLDER);
      const store = values.STRANGLER_STORE!;
      expect(isPostgresSpec(store), 'STRANGLER_STORE is a PostgreSQL URL: replicas share one database').to.equal(true);
      const url = new URL(store);
      expect(url.password, 'the database password').to.equal(PLACEHOLDER);
      expect(url.hostname, 'a host that cannot exist (RFC 2606)').to.match(/\.invalid$/);
    });
  }

  it('the real secrets.env is ignored by git; its example is not', async () => {
    const ignored = async (file: string) =>
      run('git', ['check-ignore', '-q', path.join('deploy/kubernetes', OVERLAY, file)], { cwd: fromRoot('.') }).then(
        () => true,
        (error: { code?: number }) => (error.code === 1 ? false : Promise.reject(error)),
      );
    expect(await ignored('secrets.env')).to.equal(true);
    expect(await ignored('secrets.env.example')).to.equal(false);
  });

  describe('the Deployment', () => {
    let deployment: Deployment;
    let container: IContainer;
    let env: Record<string, string>;
    const portNamed = (name: string | number | undefined): IContainerPort => {
      const port = container.ports?.find((p) => p.name === name || p.containerPort === name);
      expect(port, `a container port ${name}`).not.to.equal(undefined);
      return port!;
    };
    before(() => {
      deployment = overlay.one(Deployment);
      expect(deployment.spec!.template.spec!.containers).to.have.length(1);
      container = deployment.spec!.template.spec!.containers[0]!;
      // What the process sees: the image's ENV, then the Secret's keys, then the container's own env.
      env = { ...dockerfile().env, ...decoded(overlay.one(Secret)) };
      for (const e of container.env ?? []) if (e.value !== undefined) env[e.name] = e.value;
    });

    it('runs three replicas, never fewer during a rollout, one per node', () => {
      const spec = deployment.spec!;
      expect(spec.replicas).to.equal(3);
      expect(spec.strategy?.rollingUpdate?.maxUnavailable).to.equal(0);
      const labels = spec.template.metadata?.labels;
      const perNode = spec.template.spec!.topologySpreadConstraints?.find((c) => c.topologyKey === 'kubernetes.io/hostname');
      expect(perNode?.whenUnsatisfiable, 'a hard spread over nodes').to.equal('DoNotSchedule');
      expect(perNode?.maxSkew).to.equal(1);
      expect(isSubset(perNode?.labelSelector?.matchLabels, labels), 'the spread counts these pods').to.equal(true);
    });

    it('runs as a non-root user on a read-only root, without privilege escalation or capabilities, under seccomp RuntimeDefault', () => {
      const pod = deployment.spec!.template.spec!;
      expect(pod.securityContext?.runAsNonRoot).to.equal(true);
      // The Dockerfile's user "node" is uid 1000 in the official Node images.
      expect(dockerfile().user).to.equal('node');
      expect(pod.securityContext?.runAsUser).to.equal(1000);
      expect(pod.securityContext?.seccompProfile?.type).to.equal('RuntimeDefault');
      expect(pod.hostNetwork ?? false).to.equal(false);
      expect(pod.hostPID ?? false).to.equal(false);
      expect(pod.automountServiceAccountToken).to.equal(false);
      expect(pod.enableServiceLinks, "no STRANGLER_PROXY_* variables from the Services among the proxy's own").to.equal(false);
      const sc = container.securityContext!;
      expect(sc.readOnlyRootFilesystem).to.equal(true);
      expect(sc.allowPrivilegeEscalation).to.equal(false);
      expect(sc.privileged ?? false).to.equal(false);
      expect(sc.capabilities?.drop).to.deep.equal(['ALL']);
      expect(sc.capabilities?.add ?? []).to.deep.equal([]);
    });

    it('writes nothing: no writable volume, the store on PostgreSQL, routes.yaml read from a ConfigMap mounted as a folder', () => {
      const volumes = deployment.spec!.template.spec!.volumes ?? [];
      expect(volumes.map((v) => Object.keys(v).filter((k) => k !== 'name'))).to.deep.equal([['configMap']]);
      expect(isPostgresSpec(env.STRANGLER_STORE)).to.equal(true);
      const mount = container.volumeMounts?.find((m) => m.name === volumes[0]!.name);
      expect(mount?.readOnly).to.equal(true);
      // A subPath mount is never updated by kubelet: the folder must be mounted, and the file read inside it.
      expect(mount?.subPath).to.equal(undefined);
      expect(mount?.mountPath).to.equal(path.posix.dirname(env.STRANGLER_CONFIG!));
      const configMap = overlay.one(ConfigMap);
      expect(volumes[0]!.configMap?.name).to.equal(configMap.metadata?.name);
      expect(Object.keys(configMap.data ?? {})).to.deep.equal([path.posix.basename(env.STRANGLER_CONFIG!)]);
      // No content hash in its name: an edit updates this ConfigMap in place, for the replicas to reload.
      expect(configMap.metadata?.name).to.equal(base.one(ConfigMap).metadata?.name);
      expect(container.envFrom?.map((e) => e.secretRef?.name)).to.deep.equal([overlay.one(Secret).metadata?.name]);
    });

    it('listens where the image does: the proxy and the admin port on every interface of the pod', () => {
      expect(portNamed('proxy').containerPort).to.equal(Number(env.PORT));
      expect(portNamed('admin').containerPort).to.equal(Number(env.ADMIN_PORT));
      // kubelet's probes and Prometheus come from outside the pod: a loopback admin listener would fail them all.
      expect(env.ADMIN_HOST).to.be.oneOf(['0.0.0.0', '::']);
    });

    it("probes /healthz for liveness and /readyz for readiness on the admin port, paths the proxy's admin listener answers", async () => {
      const liveness = container.livenessProbe?.httpGet;
      const readiness = container.readinessProbe?.httpGet;
      expect(liveness?.path).to.equal('/healthz');
      expect(readiness?.path).to.equal('/readyz');
      expect(portNamed(liveness?.port).name).to.equal('admin');
      expect(portNamed(readiness?.port).name).to.equal('admin');
      const monitor = overlay.one(ServiceMonitor).spec.endpoints[0]!;

      const dir = mkdtempSync(path.join(tmpdir(), 'strangler-kubernetes-probe-'));
      const configFile = path.join(dir, 'routes.yaml');
      writeFileSync(configFile, 'backends:\n  buildbot: { url: "http://127.0.0.1:9", legacy: true }\n');
      const quiet = new Writable({ write: (_chunk, _encoding, done) => done() });
      const proxy = await startStrangler({ configFile, port: 0, adminPort: 0, host: '127.0.0.1', logger: createLogger({ stream: quiet, level: 'error' }), watch: false });
      try {
        for (const probePath of [liveness!.path!, readiness!.path!, monitor.path!]) {
          const res = await fetch(`${proxy.adminUrl}${probePath}`);
          expect(res.status, probePath).to.equal(200);
          if (probePath === monitor.path) expect(await res.text()).to.match(/^# TYPE strangler_requests_total counter$/m);
          else await res.arrayBuffer();
        }
      } finally {
        await proxy.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('gives the preStop pause and then the drain SIGTERM starts time to finish before SIGKILL', () => {
      const command = container.lifecycle?.preStop?.exec?.command ?? [];
      expect(command).to.have.length(2);
      expect(command[0]).to.equal('sleep');
      const preStop = Number(command[1]);
      expect(preStop, 'a pause long enough for endpoints to be updated').to.be.at.least(5);
      const shutdownDelay = Number(env.STRANGLER_SHUTDOWN_DELAY_MS ?? 0) / 1000;
      const grace = deployment.spec!.template.spec!.terminationGracePeriodSeconds!;
      expect(grace, `grace > preStop ${preStop} s + shutdown delay ${shutdownDelay} s + drain ${drainLimitSeconds()} s`).to.be.above(preStop + shutdownDelay + drainLimitSeconds());
    });

    it('asks for CPU and memory, and limits both, no lower than it asks', () => {
      const { requests, limits } = container.resources ?? {};
      for (const resource of ['cpu', 'memory']) {
        expect(requests?.[resource], `requests.${resource}`).not.to.equal(undefined);
        expect(limits?.[resource], `limits.${resource}`).not.to.equal(undefined);
        expect(quantity(requests![resource]!)).to.be.at.most(quantity(limits![resource]!));
      }
    });
  });

  it('ties the Services, the PodDisruptionBudget and the ServiceMonitor to the Deployment\'s pods', () => {
    const deployment = overlay.one(Deployment);
    const podLabels = deployment.spec!.template.metadata?.labels;
    const selector = deployment.spec!.selector.matchLabels;
    expect(isSubset(selector, podLabels), 'the Deployment selects its own pods').to.equal(true);
    const containerPorts = deployment.spec!.template.spec!.containers[0]!.ports!.map((p) => p.name);

    const services = overlay.of(Service);
    for (const service of services) {
      expect(isSubset(service.spec?.selector, podLabels), `Service ${service.metadata?.name} selects the pods`).to.equal(true);
      for (const port of service.spec?.ports ?? []) expect(containerPorts, `Service ${service.metadata?.name} port ${port.name}`).to.include(port.targetPort);
    }
    const proxy = services.find((s) => s.metadata?.name === 'strangler-proxy')!;
    expect(proxy.spec?.ports?.map((p) => p.targetPort), 'the clients\' Service never exposes the admin port').to.deep.equal(['proxy']);

    const budget = overlay.one(PodDisruptionBudget);
    expect(budget.spec?.selector?.matchLabels).to.deep.equal(selector);
    expect(budget.spec?.maxUnavailable, 'one replica evicted at a time').to.equal(1);

    const monitor = overlay.one(ServiceMonitor);
    const scraped = services.filter((s) => isSubset(monitor.spec.selector.matchLabels, s.metadata?.labels));
    expect(scraped.map((s) => s.metadata?.name), 'the ServiceMonitor selects the admin Service alone').to.deep.equal(['strangler-proxy-admin']);
    expect(monitor.metadata?.namespace, 'in the Service\'s namespace (no namespaceSelector needed)').to.equal(scraped[0]!.metadata?.namespace);
    const endpoint = monitor.spec.endpoints[0]!;
    expect(monitor.spec.endpoints).to.have.length(1);
    expect(scraped[0]!.spec?.ports?.find((p) => p.name === endpoint.port)?.targetPort).to.equal('admin');
    expect(endpoint.path).to.equal('/metrics');
  });
});
