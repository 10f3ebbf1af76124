/**
 * The proxy as it runs in production: the command in a child process on
 * loopback ports the test chose, so that the test can SIGKILL or SIGTERM it
 * and start it again on the same ports, routes file and store.
 */
import { startCli, type CliOptions, type CliProcess } from './cli-process.js';
import { waitFor } from './proxy.js';

export interface ProxyProcessOptions extends CliOptions {
  configFile: string;
  port: number;
  adminPort: number;
  /** The subcommand's name and arguments before the common ones; none runs the default command (serve). */
  command?: string[];
  /** More arguments after the common ones (`--data-dir`, `--log-level`, ...). */
  args?: string[];
  /** How long it may take to say it listens. */
  startTimeoutMs: number;
}

/**
 * Starts the proxy and waits for its "strangler-proxy listening" line (logged
 * at info: a lower `--log-level` hides it); rejects with its output if it
 * exits first or says nothing in time, and then leaves nothing running.
 */
export async function startProxyProcess(options: ProxyProcessOptions): Promise<CliProcess> {
  const args = [...(options.command ?? []), '--config', options.configFile, '--port', String(options.port), '--admin-port', String(options.adminPort), '--host', '127.0.0.1', ...(options.args ?? [])];
  const proxy = startCli(args, options);
  try {
    await waitFor(
      () => proxy.output().includes('strangler-proxy listening') || (proxy.running() ? undefined : Promise.reject(new Error(`the proxy exited: ${proxy.output()}`))),
      options.startTimeoutMs,
      'the proxy to start',
    );
  } catch (error) {
    await proxy.stop('SIGKILL');
    throw error;
  }
  return proxy;
}

export interface RestartableProxyOptions {
  configFile: string;
  port: number;
  adminPort: number;
  /** Its embedded store's folder, the same at each start. */
  dataDir: string;
  /** What it signs its queue calls with (TASKCLUSTER_CLIENT_ID and TASKCLUSTER_ACCESS_TOKEN). */
  credentials: { clientId: string; accessToken: string };
}

/**
 * `serve` that a test kills and starts again on the same ports, routes file
 * and store, logging at info, given 20 s to say it listens.
 */
export class RestartableProxy {
  private proc: CliProcess | undefined;

  constructor(private readonly options: RestartableProxyOptions) {}

  /** The process started last, until stop() ends it; one that ended on its own stays, for the test to see. */
  get current(): CliProcess | undefined {
    return this.proc;
  }

  async start(): Promise<void> {
    const o = this.options;
    this.proc = await startProxyProcess({
      command: ['serve'],
      configFile: o.configFile,
      port: o.port,
      adminPort: o.adminPort,
      args: ['--data-dir', o.dataDir, '--log-level', 'info'],
      env: { ...process.env, TASKCLUSTER_CLIENT_ID: o.credentials.clientId, TASKCLUSTER_ACCESS_TOKEN: o.credentials.accessToken },
      startTimeoutMs: 20_000,
    });
  }

  /** Sends `signal` to the running process and waits for its exit; nothing if none runs. */
  async stop(signal: NodeJS.Signals): Promise<void> {
    if (this.proc === undefined || !this.proc.running()) return;
    await this.proc.stop(signal);
    this.proc = undefined;
  }

  /** What the current process has written. */
  output(): string {
    return this.proc?.output() ?? '';
  }
}
