/**
 * Wires the named parts together and listens: config store, routing, the
 * forwarding engine, metrics, logs, the proxy listener and the admin listener.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { createAdminApp, type BackendStatus } from './admin/app.js';
import { ConfigHistory } from './config/history.js';
import { explainRequest } from './explain.js';
import { TrafficStats } from './metrics/traffic.js';
import { planSteps } from './routing/plan.js';
import { runInSlices } from './config/slices.js';
import { loadConfigFile } from './config/load.js';
import { ConfigStore, type ReloadEvent, type ReloadTrigger } from './config/store.js';
import { StranglerError } from './errors.js';
import { createLogger, type Logger } from './logging/logger.js';
import { ProxyMetrics } from './metrics/metrics.js';
import { BuilderDirectory } from './ingress/builder-directory.js';
import { Upstream } from './upstream/upstream.js';
import { CircuitBreakers } from './resilience/circuit.js';
import { HealthMonitor } from './resilience/health.js';
import { Shadower } from './shadow/shadow.js';
import { createProxyServer } from './ingress/server.js';
import { QueueWork } from './taskcluster/queue-work.js';
import { LiveEvents } from './live/hub.js';

export interface StartOptions {
  configFile: string;
  /** 0 picks a free port (tests). */
  port: number;
  adminPort: number;
  host?: string;
  adminHost?: string;
  logger?: Logger;
  /** Follow routes.yaml for changes (default true). */
  watch?: boolean;
  /** How long in-flight requests get to finish on shutdown. */
  drainTimeoutMs?: number;
  /**
   * On shutdown, how long `/readyz` says "not ready" while the proxy still
   * takes new requests, before it stops accepting them and drains: the time a
   * load balancer needs to notice (its health check interval times its fall
   * count). 0 by default; on Kubernetes a preStop pause does the same.
   */
  shutdownDelayMs?: number;
  /** SECURITY: bearer token for the admin API's POST endpoints (none: they are disabled). */
  adminToken?: string;
  /** Require the token for the admin API's read endpoints too (metrics and health stay open). */
  protectAdminReads?: boolean;
  /** How long a client has to send its request headers (default 30 s). */
  clientHeadersTimeoutMs?: number;
  /** Longest pause inside a request body (default 30 s; 0 = none); see ProxyServerOptions. */
  clientBodyIdleTimeoutMs?: number;
  /** Request-body bytes held in memory across all requests (default 64 MiB; 0 = no cap); see ProxyServerOptions. */
  maxHeldBodyBytes?: number;
  pollIntervalMs?: number;
  /**
   * The store for work on Taskcluster queues and build tracking: a
   * `postgres://` URL, or empty for the embedded store in `dataDir`. Opened
   * when routes.yaml has a backend of kind taskcluster or a route with
   * `track: true`, or when this or `dataDir` is given.
   */
  store?: string;
  /** Where the embedded store keeps its file (default ./data). */
  dataDir?: string;
  /** How often stored forces left open by a crash are finished, and unfinished tasks are followed (default 5 s). */
  queueFollowIntervalMs?: number;
  /** How often builds on Buildbot-API backends are looked at besides their events (default 5 s). */
  trackingIntervalMs?: number;
  /** This replica's name, shown by the admin API and status page (default STRANGLER_REPLICA, or the host name: a pod's name on Kubernetes). */
  replica?: string;
  /**
   * Log and count promise rejections nobody handled instead of letting Node
   * exit on them (the command sets it; tests running the proxy in-process
   * keep their runner's own handling).
   */
  guardUnhandledRejections?: boolean;
}

export interface Strangler {
  readonly proxyUrl: string;
  readonly adminUrl: string;
  readonly store: ConfigStore;
  readonly metrics: ProxyMetrics;
  readonly logger: Logger;
  reload(trigger?: ReloadTrigger): Promise<ReloadEvent>;
  /** Stops accepting, lets in-flight requests finish (up to the drain timeout), then closes everything. */
  close(): Promise<void>;
}

export const DEFAULT_PORT = 8010;
export const DEFAULT_ADMIN_PORT = 8081;

/** Loads the config (throwing CONFIG_INVALID if it is bad) and starts both listeners. */
export async function startStrangler(options: StartOptions): Promise<Strangler> {
  const logger = options.logger ?? createLogger();
  const initial = await loadConfigFile(options.configFile);
  const store = new ConfigStore(options.configFile, initial, { pollIntervalMs: options.pollIntervalMs ?? 1000 });
  const metrics = new ProxyMetrics();
  metrics.tableLoaded(initial);
  const unguard = options.guardUnhandledRejections ? guardUnhandledRejections(logger, metrics) : () => undefined;
  const upstream = new Upstream();
  const health = new HealthMonitor(upstream);
  health.on('probe', (state) => {
    if (state.up !== undefined) metrics.backendUp.set({ backend: state.backend }, state.up ? 1 : 0);
  });
  health.on('change', (state) => {
    if (state.up) logger.info('backend up: health probes answer again', { backend: state.backend });
    else logger.warn('backend down: health probes fail', { backend: state.backend, error: state.lastError });
  });
  health.follow(initial);
  const breakers = new CircuitBreakers();
  const showCircuits = (table: typeof initial) => {
    metrics.circuitState.reset();
    for (const name of table.backends.keys()) metrics.setCircuitState(name, breakers.state(name));
  };
  showCircuits(initial);
  breakers.on('change', (backend, state) => {
    metrics.setCircuitState(backend, state);
    if (state === 'open') logger.warn('circuit open: requests to this backend are held off', { backend, retryAfterSeconds: breakers.retryAfterSeconds(backend) });
    else logger.info(`circuit ${state}`, { backend });
  });
  const shadower = new Shadower(upstream, metrics, logger);
  const builders = new BuilderDirectory(upstream, {
    onError: (error, backend) => logger.warn('builder id lookup failed; requests by builder id go to the default backend', { backend: backend.name, url: backend.url, error: error.message }),
  });
  const live = new LiveEvents({ logger, store: () => queues.openedStore() });
  const queues: QueueWork = new QueueWork(upstream, builders, metrics, logger, { ...options, observers: [live.observer] }, (translator) => {
    shadower.translatedCopy = (backend, decision, table, request, limit) => translator.copy(backend, decision.route, table, request, limit);
  });
  await queues.follow(initial);
  let draining = false;
  let listening = false;
  const traffic = new TrafficStats();
  const history = new ConfigHistory();
  history.add({ at: initial.source.loadedAt.toISOString(), trigger: 'startup', result: 'success', hash: initial.source.hash, error: null, moved: [], movedShareOfLastHour: 0 });
  const learnBuilders = () =>
    void builders.preload(store.current().legacy).then(() => metrics.addKnownJobTypes(builders.allNames()));
  learnBuilders();
  const builderTimer = setInterval(learnBuilders, 5 * 60_000);
  builderTimer.unref();

  // A reload's bookkeeping (the plan in history, per-route metrics) runs in slices after the new table is in
  // force: on a file of tens of thousands of routes it takes far longer than a request may wait.
  let bookkeeping = Promise.resolve();
  store.on('reload', (event) => {
    metrics.reloads.inc({ result: event.result });
    if (event.result === 'success') {
      if (event.table.legacy.origin !== event.previous?.legacy.origin) learnBuilders();
      health.follow(event.table);
      void queues.follow(event.table).catch((error: unknown) => logger.error('the store could not be opened; forces to queues are refused until it can', { error: (error as Error).message }));
      breakers.retainOnly(event.table.backends.keys());
      showCircuits(event.table);
      upstream.retainOnly(event.table.backends.values());
      logger.info('routes reloaded', { file: store.file, trigger: event.trigger, hash: event.hash, routes: event.table.routes.length });
    }
    const previous = event.result === 'success' ? event.previous : undefined;
    const jobTypes = previous ? metrics.knownJobTypeNames() : [];
    const lastHour = previous ? traffic.requestsByJobType('1h') : new Map<string, number>();
    bookkeeping = bookkeeping
      .then(async () => {
        const plan = previous ? await runInSlices(planSteps(previous, event.table, jobTypes, lastHour)) : undefined;
        history.add({
          at: event.at.toISOString(),
          trigger: event.trigger,
          result: event.result,
          hash: event.hash ?? null,
          error: event.error?.message ?? null,
          moved: plan?.changes ?? [],
          movedShareOfLastHour: plan?.movedShareOfTraffic ?? 0,
        });
        // A later reload may already be in force: only the table in force shapes the metrics.
        if (event.result === 'success' && store.current() === event.table) await runInSlices(metrics.tableLoadedSteps(event.table));
      })
      .catch((error: unknown) => {
        logger.error('reload bookkeeping failed', { error: (error as Error)?.stack ?? String(error) });
      });
    if (event.result !== 'success') logger.error('routes.yaml rejected; the previous routes stay in force', { file: store.file, trigger: event.trigger, error: event.error?.message });
  });

  const proxyServer = createProxyServer({ currentTable: () => store.current(), upstream, builders, breakers, health, shadower, metrics, traffic, logger, isDraining: () => draining, translator: queues.translator, tracker: queues.tracker }, {
    ...(options.clientHeadersTimeoutMs ? { clientHeadersTimeoutMs: options.clientHeadersTimeoutMs } : {}),
    ...(options.clientBodyIdleTimeoutMs !== undefined ? { clientBodyIdleTimeoutMs: options.clientBodyIdleTimeoutMs } : {}),
    ...(options.maxHeldBodyBytes !== undefined ? { maxHeldBodyBytes: options.maxHeldBodyBytes } : {}),
    live,
  });
  // A start that fails part-way (a port taken) leaves nothing behind: no listener, probe, timer or connection.
  const abandon = async () => {
    clearInterval(builderTimer);
    await queues.close();
    store.close();
    health.close();
    if (proxyServer.listening) await new Promise<void>((resolve) => proxyServer.close(() => resolve()));
    await upstream.close();
  };
  const proxyAddress = await listen(proxyServer, options.port, options.host ?? '0.0.0.0', 'proxy').catch(async (error: unknown) => {
    await abandon();
    throw error;
  });
  const backendStatus = (): BackendStatus[] =>
    [...store.current().backends.values()].map((b) => {
      const probe = health.state(b.name);
      return {
        name: b.name,
        url: b.url,
        legacy: b.legacy,
        isDefault: b === store.current().defaultBackend,
        up: probe?.up ?? null,
        lastProbeAt: probe?.lastProbeAt?.toISOString() ?? null,
        lastProbeError: probe?.lastError ?? null,
        circuit: breakers.state(b.name),
        inFlight: traffic.inFlightCount(b.name),
      };
    });
  const adminHttp = createServer(
    createAdminApp({
      metrics,
      isReady: () => listening && !draining,
      table: () => store.current(),
      history: () => history.list(),
      traffic,
      backends: backendStatus,
      knownJobTypes: () => metrics.knownJobTypeNames(),
      reload: () => store.reload('admin'),
      explain: (input) => explainRequest(store.current(), input, builders, { store: queues.openedStore() }),
      queues: { store: queues.openedStore, hasCredentials: (backend) => queues.client.hasCredentials(backend) },
      builds: { outcomes: queues.openedStore },
      replica: options.replica ?? process.env.STRANGLER_REPLICA ?? hostname(),
      auth: { token: options.adminToken || undefined, protectReads: options.protectAdminReads === true },
    }),
  );
  // Never run without /metrics and /healthz: if the admin port cannot be had, the proxy port is let go too.
  const adminAddress = await listen(adminHttp, options.adminPort, options.adminHost ?? '127.0.0.1', 'admin').catch(async (error: unknown) => {
    await abandon();
    throw error;
  });
  listening = true;
  if (options.watch !== false) store.watch();

  const proxyUrl = `http://${urlHost(proxyAddress)}:${proxyAddress.port}`;
  const adminUrl = `http://${urlHost(adminAddress)}:${adminAddress.port}`;
  logger.info('strangler-proxy listening', {
    proxy: proxyUrl,
    admin: adminUrl,
    listening: { proxy: boundAddress(proxyAddress), admin: boundAddress(adminAddress) },
    config: options.configFile,
    hash: initial.source.hash,
    backends: [...initial.backends.values()].map((b) => `${b.name}=${b.url}${b.legacy ? ' (legacy)' : ''}`),
    routes: initial.routes.length,
  });

  return {
    proxyUrl,
    adminUrl,
    store,
    metrics,
    logger,
    reload: (trigger = 'admin') => store.reload(trigger),
    async close() {
      draining = true;
      // Unready first, still serving: a load balancer stops sending before connections are refused.
      if ((options.shutdownDelayMs ?? 0) > 0) await new Promise((resolve) => setTimeout(resolve, options.shutdownDelayMs));
      clearInterval(builderTimer);
      store.close();
      health.close();
      await drain(proxyServer, options.drainTimeoutMs ?? 10_000);
      await new Promise<void>((resolve) => {
        adminHttp.close(() => resolve());
        adminHttp.closeAllConnections();
      });
      await queues.close();
      await upstream.close();
      logger.flushAccess();
      unguard();
    },
  };
}

/**
 * The last resort for a rejection no code awaited: one bug must not take every
 * job type, both backends and all clients down, so it is logged in full and
 * counted (strangler_internal_errors_total), and the process keeps serving.
 * Errors inside request handling are caught closer, with their request id
 * (src/ingress/handler.ts).
 */
export function guardUnhandledRejections(logger: Logger, metrics: ProxyMetrics): () => void {
  const onRejection = (reason: unknown): void => {
    metrics.internalErrors.inc();
    logger.error('unhandled rejection', { error: (reason as Error)?.stack ?? String(reason) });
  };
  process.on('unhandledRejection', onRejection);
  return () => process.off('unhandledRejection', onRejection);
}

/** Listens, or rejects with LISTEN_FAILED naming the listener, the address and why. */
function listen(server: Server, port: number, host: string, listener: 'proxy' | 'admin'): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    const failed = (error: NodeJS.ErrnoException) => reject(listenFailed(error, listener, host, port));
    server.once('error', failed);
    server.listen(port, host, () => {
      server.off('error', failed);
      resolve(server.address() as AddressInfo);
    });
  });
}

function listenFailed(error: NodeJS.ErrnoException, listener: 'proxy' | 'admin', host: string, port: number): StranglerError {
  const reasons: Record<string, string> = {
    EADDRINUSE: 'the port is already in use',
    EACCES: port > 0 && port < 1024 ? 'permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)' : 'permission denied',
    EADDRNOTAVAIL: 'the address is not one of this machine\'s',
    ENOTFOUND: 'the host name does not resolve',
    EAI_AGAIN: 'the host name does not resolve',
  };
  const why = reasons[error.code ?? ''] ?? error.message;
  const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  return new StranglerError('LISTEN_FAILED', `cannot listen for the ${listener === 'proxy' ? 'proxy' : 'admin API'} on ${where}: ${why}${error.code ? ` (${error.code})` : ''}`, {
    cause: error,
    details: { listener, host, port },
  });
}

/** Where a listener is bound, as an operator reads it: "0.0.0.0:8010 (all IPv4 interfaces)". */
function boundAddress(address: AddressInfo): string {
  const where = `${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  if (address.address === '0.0.0.0') return `${where} (all IPv4 interfaces)`;
  if (address.address === '::') return `${where} (all interfaces)`;
  return where;
}

function urlHost(address: AddressInfo): string {
  if (address.address === '0.0.0.0' || address.address === '::') return '127.0.0.1';
  return address.family === 'IPv6' ? `[${address.address}]` : address.address;
}

/**
 * Stop accepting, close idle keep-alive connections, let requests in flight
 * finish; whatever is still open after the timeout is cut.
 */
async function drain(server: Server, timeoutMs: number): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  // A keep-alive connection whose last response just finished is closed at once, not left idle
  // for its keep-alive timeout; requests started from now on are answered with Connection: close.
  server.closeIdleConnections();
  const sweep = setInterval(() => server.closeIdleConnections(), 100);
  const timer = setTimeout(() => server.closeAllConnections(), timeoutMs);
  timer.unref();
  await closed;
  clearInterval(sweep);
  clearTimeout(timer);
}
