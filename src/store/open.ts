import path from 'node:path';
import { openEmbeddedStore } from './embedded.js';
import { openPostgresStore } from './postgres.js';
import type { Store } from './store.js';

export const DEFAULT_DATA_DIR = './data';

/** Whether a store spec names a PostgreSQL database rather than the embedded file. */
export function isPostgresSpec(spec: string | undefined): spec is string {
  return spec !== undefined && /^postgres(ql)?:\/\//i.test(spec);
}

/**
 * Opens the store a spec names, migrated to the current schema:
 * a `postgres://` or `postgresql://` URL selects PostgreSQL; anything else
 * (or nothing) the embedded file in `dataDir` (default `./data`, created).
 * Fails with STORE_UNAVAILABLE or STORE_CORRUPT; a message never holds the
 * URL's password.
 *
 * @example
 *   const store = await openStore(process.env.STRANGLER_STORE, { dataDir: '/var/lib/strangler-proxy' });
 *   const [bsid] = await store.allocateIds('buildset', 1);
 */
export async function openStore(spec: string | undefined, options: { dataDir?: string } = {}): Promise<Store> {
  if (isPostgresSpec(spec)) return openPostgresStore(spec);
  return openEmbeddedStore(path.resolve(options.dataDir ?? DEFAULT_DATA_DIR));
}
