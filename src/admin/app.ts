/**
 * The admin listener: metrics for Prometheus and probes for orchestrators,
 * kept off the proxy port so clients of the proxy never see them.
 */
import express, { type Express } from 'express';
import type { ConfigVersion } from '../config/history.js';
import type { ReloadEvent } from '../config/store.js';
import type { ExplainInput, Explanation } from '../explain.js';
import type { ProxyMetrics } from '../metrics/metrics.js';
import type { TrafficStats } from '../metrics/traffic.js';
import type { CircuitState } from '../proxy/circuit.js';
import type { RoutingTable } from '../routing/table.js';

export interface BackendStatus {
  name: string;
  url: string;
  legacy: boolean;
  isDefault: boolean;
  /** From the health probes; null before the first conclusive probe. */
  up: boolean | null;
  lastProbeAt: string | null;
  lastProbeError: string | null;
  circuit: CircuitState;
  inFlight: number;
}

/** Everything the admin side may read or do; main wires it to the running parts. */
export interface AdminDeps {
  metrics: ProxyMetrics;
  /** False while starting and while draining on shutdown. */
  isReady: () => boolean;
  /** The routing table in force (its `source` has file, hash, load time and text). */
  table: () => RoutingTable;
  history: () => readonly ConfigVersion[];
  traffic: TrafficStats;
  backends: () => BackendStatus[];
  /** Job types known from routes, traffic and the legacy master. */
  knownJobTypes: () => string[];
  reload: () => Promise<ReloadEvent>;
  explain: (input: ExplainInput) => Promise<Explanation>;
  /** SECURITY: the bearer token for POST endpoints (and reads, if protectReads); none disables POSTs. */
  auth: { token: string | undefined; protectReads: boolean };
}

export function createAdminApp(deps: AdminDeps): Express {
  const app = express();
  app.disable('x-powered-by');

  app.get('/metrics', async (_req, res) => {
    res.set('content-type', deps.metrics.registry.contentType);
    res.end(await deps.metrics.registry.metrics());
  });
  // Alive: the process answers. Nothing else is checked, so a backend outage never gets the proxy restarted.
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  // Ready: routes loaded and the proxy listening; false while draining, so load balancers stop sending.
  app.get('/readyz', (_req, res) => {
    const ready = deps.isReady();
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not ready' });
  });
  app.use((_req, res) => {
    res.status(404).json({ error: 'not found', endpoints: ['/metrics', '/healthz', '/readyz'] });
  });
  return app;
}
