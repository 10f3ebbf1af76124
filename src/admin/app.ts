/**
 * The admin listener: metrics for Prometheus and probes for orchestrators,
 * kept off the proxy port so clients of the proxy never see them.
 */
import express, { type Express } from 'express';
import type { ProxyMetrics } from '../metrics/metrics.js';

export interface AdminDeps {
  metrics: ProxyMetrics;
  /** False while starting and while draining on shutdown. */
  isReady: () => boolean;
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
