/**
 * The process-wide last resort, in a real child process: a rejection no code
 * awaited is logged and counted, and the process keeps running (Node's own
 * default would exit it, taking every client down).
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('e2e: last-resort guard', () => {
  it('logs and counts an unhandled rejection, and the process lives on', async () => {
    const script = `
      const { guardUnhandledRejections } = await import(${JSON.stringify(path.join(ROOT, 'dist/main.js'))});
      const { ProxyMetrics } = await import(${JSON.stringify(path.join(ROOT, 'dist/metrics/metrics.js'))});
      const { createLogger } = await import(${JSON.stringify(path.join(ROOT, 'dist/logging/logger.js'))});
      const metrics = new ProxyMetrics({ defaultMetrics: false });
      guardUnhandledRejections(createLogger({ level: 'info' }), metrics);
      Promise.reject(new Error('nobody awaited this'));
      setTimeout(async () => {
        const counted = (await metrics.internalErrors.get()).values[0]?.value;
        console.log(JSON.stringify({ alive: true, counted }));
      }, 100);
    `;
    const { stdout } = await new Promise<{ stdout: string }>((resolve, reject) =>
      execFile(process.execPath, ['--input-type=module', '-e', script], { timeout: 10_000 }, (error, out) => (error ? reject(error) : resolve({ stdout: out }))),
    );
    const lines = stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const logged = lines.find((l) => l.message === 'unhandled rejection');
    expect(String(logged?.error)).to.contain('nobody awaited this');
    expect(lines.at(-1)).to.deep.equal({ alive: true, counted: 1 });
  });
});
