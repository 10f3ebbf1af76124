/**
 * The admin app's dependencies for its unit tests: those of a proxy on
 * `table` that is ready and has served nothing, each replaceable; and an
 * embedded store in a temporary folder for what the app reads from one.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AdminDeps } from '../../src/admin/app.js';
import { explainRequest } from '../../src/explain.js';
import { ProxyMetrics } from '../../src/metrics/metrics.js';
import { TrafficStats } from '../../src/metrics/traffic.js';
import type { RoutingTable } from '../../src/routing/table.js';
import { openStore } from '../../src/store/open.js';
import type { Store } from '../../src/store/store.js';

export function adminDeps(table: RoutingTable, overrides: Partial<AdminDeps> = {}): AdminDeps {
  return {
    metrics: new ProxyMetrics({ defaultMetrics: false }),
    isReady: () => true,
    table: () => table,
    history: () => [],
    traffic: new TrafficStats(),
    backends: () => [],
    knownJobTypes: () => [],
    reload: () => Promise.reject(new Error('not in this test')),
    explain: (input) => explainRequest(table, input, { nameFor: async () => undefined }),
    replica: 'replica-under-test',
    auth: { token: undefined, protectReads: false },
    ...overrides,
  };
}

/** An embedded store of its own; close() closes it and removes its folder. */
export async function openTempStore(): Promise<{ store: Store; close(): Promise<void> }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'strangler-store-'));
  const store = await openStore(undefined, { dataDir: dir }).catch((error: unknown) => {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  });
  return {
    store,
    close: async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Runs `use` on a store that was opened and closed again: every read of it fails, as when its database is gone. */
export async function withClosedStore<T>(use: (closed: Store) => Promise<T>): Promise<T> {
  const { store, close } = await openTempStore();
  await store.close();
  try {
    return await use(store);
  } finally {
    await close();
  }
}
