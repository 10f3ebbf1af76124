/**
 * A proxy in this process in front of a legacy master and a Taskcluster
 * queue (its routes as tables.ts legacyAndQueueYaml writes them, as a rule),
 * with its routes file and embedded store in a temporary folder and the
 * queue's credentials in the environment for as long as it runs.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLogger } from '../../src/logging/logger.js';
import { startStrangler, type StartOptions, type Strangler } from '../../src/main.js';

export interface QueueProxyOptions extends Omit<StartOptions, 'configFile' | 'port' | 'adminPort' | 'host' | 'dataDir'> {
  /** What the proxy signs its queue calls with: set as TASKCLUSTER_CLIENT_ID and TASKCLUSTER_ACCESS_TOKEN. */
  credentials?: { clientId: string; accessToken: string };
  /** More variables the routes file names (another queue's credentials), set the same way. */
  env?: Record<string, string>;
  /** Runs on the data folder before the proxy opens its store there (to seed it). */
  beforeStart?: (dataDir: string) => Promise<void>;
}

export interface QueueProxy {
  proxy: Strangler;
  /** The temporary folder: routes.yaml, and the store in data/. */
  dir: string;
  configFile: string;
  /** Stops the proxy, puts the variables back as they were, removes the folder. */
  close(): Promise<void>;
}

/** Starts the proxy (both listeners on port 0, logging errors only unless given a logger) on `yaml`. */
export async function startQueueProxy(yaml: string, options: QueueProxyOptions = {}): Promise<QueueProxy> {
  const { credentials, env, beforeStart, ...start } = options;
  const dir = mkdtempSync(path.join(tmpdir(), 'strangler-queue-proxy-'));
  const configFile = path.join(dir, 'routes.yaml');
  writeFileSync(configFile, yaml);
  const variables = { ...(credentials ? { TASKCLUSTER_CLIENT_ID: credentials.clientId, TASKCLUSTER_ACCESS_TOKEN: credentials.accessToken } : {}), ...env };
  const saved = Object.keys(variables).map((name) => [name, process.env[name]] as const);
  Object.assign(process.env, variables);
  let proxy: Strangler | undefined;
  const close = async () => {
    await proxy?.close();
    for (const [name, value] of saved) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const dataDir = path.join(dir, 'data');
    await beforeStart?.(dataDir);
    proxy = await startStrangler({ logger: createLogger({ level: 'error' }), ...start, configFile, port: 0, adminPort: 0, host: '127.0.0.1', dataDir });
    return { proxy, dir, configFile, close };
  } catch (error) {
    await close();
    throw error;
  }
}
