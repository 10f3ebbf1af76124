/**
 * Starts the real proxy (both listeners, port 0) on a routes file in a temp
 * folder, with its log lines captured for assertions.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { createLogger } from '../../src/logging/logger.js';
import { startStrangler, type Strangler } from '../../src/main.js';

export interface TestProxy {
  proxy: Strangler;
  url: string;
  adminUrl: string;
  configFile: string;
  dir: string;
  /** Every log line so far, parsed. */
  logs(): Array<Record<string, unknown>>;
  writeConfig(yaml: string): void;
  close(): Promise<void>;
}

export function routesYaml(backends: Record<string, { url: string; legacy?: boolean; extra?: string }>, body = ''): string {
  const lines = Object.entries(backends).map(
    ([name, b]) => `  ${name}: { url: ${b.url}${b.legacy ? ', legacy: true' : ''}${b.extra ? `, ${b.extra}` : ''} }`,
  );
  return `backends:\n${lines.join('\n')}\n${body}`;
}

export async function startTestProxy(yaml: string, options: { pollIntervalMs?: number; drainTimeoutMs?: number; clientHeadersTimeoutMs?: number; quiet?: boolean; adminToken?: string; protectAdminReads?: boolean } = {}): Promise<TestProxy> {
  const dir = mkdtempSync(path.join(tmpdir(), 'strangler-test-'));
  const configFile = path.join(dir, 'routes.yaml');
  writeFileSync(configFile, yaml);
  const lines: string[] = [];
  let partial = '';
  // A Writable, not a PassThrough: each write lands in `lines` synchronously, so logs() sees a flushed batch at once.
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      const parts = (partial + chunk.toString('utf8')).split('\n');
      partial = parts.pop() ?? '';
      lines.push(...parts.filter(Boolean));
      done();
    },
  });
  const logger = createLogger({ stream, level: options.quiet ? 'warn' : 'debug' });
  const proxy = await startStrangler({
    configFile,
    port: 0,
    adminPort: 0,
    host: '127.0.0.1',
    // quiet: load tests keep only warnings and errors, so millions of access-log lines are not held in memory.
    logger,
    ...(options.clientHeadersTimeoutMs ? { clientHeadersTimeoutMs: options.clientHeadersTimeoutMs } : {}),
    ...(options.adminToken ? { adminToken: options.adminToken } : {}),
    protectAdminReads: options.protectAdminReads === true,
    pollIntervalMs: options.pollIntervalMs ?? 1000,
    drainTimeoutMs: options.drainTimeoutMs ?? 2000,
  });
  return {
    proxy,
    url: proxy.proxyUrl,
    adminUrl: proxy.adminUrl,
    configFile,
    dir,
    logs: () => {
      logger.flushAccess(); // access lines are batched; a test reads them all
      return lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    writeConfig: (text) => writeFileSync(configFile, text),
    close: async () => {
      await proxy.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function waitFor<T>(probe: () => Promise<T | undefined> | T | undefined, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
