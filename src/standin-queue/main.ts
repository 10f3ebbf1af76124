/**
 * Runs the stand-in queue as a process of its own, for tests in other
 * processes and for the demo:
 *
 *   TASKCLUSTER_CLIENT_ID=tester TASKCLUSTER_ACCESS_TOKEN=secret \
 *     node dist/standin-queue/main.js --port 0 --task-queue proj-demo/worker
 *
 * Prints `{"rootUrl": ..., "port": ...}` on one stdout line once listening;
 * SIGTERM or SIGINT closes it and exits 0.
 */
import { parseArgs } from 'node:util';
import { startStandinQueue } from './server.js';

const USAGE =
  'usage: main.js [--port N] [--host 127.0.0.1] [--task-queue provisionerId/workerType]... [--no-worker]\n' +
  '       [--start-delay-ms N] [--run-ms N] [--failure-rate 0..1] [--seed N]\n' +
  'credentials: TASKCLUSTER_CLIENT_ID and TASKCLUSTER_ACCESS_TOKEN (given scopes ["*"])';

function num(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) {
    process.stderr.write(`--${name} must be a number >= 0, got "${value}"\n${USAGE}\n`);
    process.exit(2);
  }
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      'task-queue': { type: 'string', multiple: true },
      'no-worker': { type: 'boolean' },
      'start-delay-ms': { type: 'string' },
      'run-ms': { type: 'string' },
      'failure-rate': { type: 'string' },
      seed: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const clientId = process.env.TASKCLUSTER_CLIENT_ID;
  const accessToken = process.env.TASKCLUSTER_ACCESS_TOKEN;
  if (!clientId || !accessToken) {
    process.stderr.write(`TASKCLUSTER_CLIENT_ID and TASKCLUSTER_ACCESS_TOKEN must be set\n${USAGE}\n`);
    process.exit(2);
  }
  const failureRate = num(values['failure-rate'], 'failure-rate', 0);
  if (failureRate > 1) {
    process.stderr.write(`--failure-rate must be between 0 and 1, got ${failureRate}\n`);
    process.exit(2);
  }
  const queue = await startStandinQueue({
    port: num(values.port, 'port', 0),
    host: values.host ?? '127.0.0.1',
    // SECURITY: the token comes from the environment and is never printed.
    clients: { [clientId]: { accessToken, scopes: ['*'] } },
    worker: values['no-worker']
      ? false
      : {
          taskQueueIds: values['task-queue'] ?? ['proj-standin/worker'],
          startDelayMs: num(values['start-delay-ms'], 'start-delay-ms', 100),
          runMs: num(values['run-ms'], 'run-ms', 1000),
          failureRate,
          seed: num(values.seed, 'seed', 1),
        },
  });
  process.stdout.write(`${JSON.stringify({ rootUrl: queue.rootUrl, port: queue.port })}\n`);
  const stop = (): void => {
    queue.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`stand-in queue failed to start: ${(err as Error).message}\n`);
  process.exit(1);
});
