/**
 * Active health probes: each backend is asked `GET <health.path>` every
 * `health.intervalMs`. Any answer below 500 counts as healthy (the backend is
 * there and serving); a 5xx, a refused connection or a timeout does not.
 * Thresholds of consecutive results move a backend between up and down, so
 * one slow probe does not flap it.
 */
import { EventEmitter } from 'node:events';
import type { Backend, RoutingTable } from '../routing/table.js';
import { UpstreamError, type Upstream } from '../upstream/upstream.js';

export interface BackendHealthState {
  backend: string;
  /** Undefined until the first probe has answered. */
  up: boolean | undefined;
  consecutiveSuccesses: number;
  consecutiveFailures: number;
  lastProbeAt: Date | undefined;
  lastError: string | undefined;
}

interface Probe {
  backend: Backend;
  state: BackendHealthState;
  timer: NodeJS.Timeout | undefined;
  running: boolean;
}

export class HealthMonitor extends EventEmitter<{ change: [BackendHealthState]; probe: [BackendHealthState] }> {
  private readonly probes = new Map<string, Probe>();
  private closed = false;

  constructor(private readonly upstream: Pick<Upstream, 'fetch'>) {
    super();
  }

  /** Starts, re-configures and stops probes to match a table's backends. */
  follow(table: RoutingTable): void {
    if (this.closed) return;
    for (const [name, probe] of this.probes) {
      const next = table.backends.get(name);
      if (!next || !sameTarget(next, probe.backend)) this.stop(name);
    }
    for (const backend of table.backends.values()) {
      const existing = this.probes.get(backend.name);
      if (existing) {
        existing.backend = backend; // thresholds and interval may have changed; the state carries over
        continue;
      }
      const probe: Probe = {
        backend,
        state: { backend: backend.name, up: undefined, consecutiveSuccesses: 0, consecutiveFailures: 0, lastProbeAt: undefined, lastError: undefined },
        timer: undefined,
        running: false,
      };
      this.probes.set(backend.name, probe);
      if (backend.health.intervalMs > 0) this.schedule(probe, 0);
    }
  }

  states(): BackendHealthState[] {
    return [...this.probes.values()].map((p) => ({ ...p.state }));
  }

  /** True only when the probes have marked the backend down (asked once per request: no copy). */
  isDown(name: string): boolean {
    return this.probes.get(name)?.state.up === false;
  }

  state(name: string): BackendHealthState | undefined {
    const probe = this.probes.get(name);
    return probe ? { ...probe.state } : undefined;
  }

  close(): void {
    this.closed = true;
    for (const name of [...this.probes.keys()]) this.stop(name);
  }

  private stop(name: string): void {
    const probe = this.probes.get(name);
    if (probe) clearTimeout(probe.timer);
    this.probes.delete(name);
  }

  private schedule(probe: Probe, delayMs: number): void {
    probe.timer = setTimeout(() => void this.probe(probe), delayMs);
    probe.timer.unref();
  }

  private async probe(probe: Probe): Promise<void> {
    if (this.probes.get(probe.backend.name) !== probe || probe.running) return;
    probe.running = true;
    const { backend } = probe;
    let ok = false;
    let error: string | undefined;
    try {
      const answer = await this.upstream.fetch(backend, { path: backend.health.path, headers: ['user-agent', 'strangler-proxy health probe'], timeoutMs: backend.health.timeoutMs });
      ok = answer.status < 500;
      if (!ok) error = `answered ${answer.status}`;
    } catch (e) {
      error = describe(e);
    }
    probe.running = false;
    if (this.probes.get(backend.name) !== probe) return; // stopped meanwhile
    this.record(probe, ok, error);
    if (backend.health.intervalMs > 0) this.schedule(probe, backend.health.intervalMs);
  }

  private record(probe: Probe, ok: boolean, error: string | undefined): void {
    const s = probe.state;
    const h = probe.backend.health;
    s.lastProbeAt = new Date();
    s.lastError = ok ? undefined : error;
    s.consecutiveSuccesses = ok ? s.consecutiveSuccesses + 1 : 0;
    s.consecutiveFailures = ok ? 0 : s.consecutiveFailures + 1;
    const before = s.up;
    // An unknown backend is presumed up: it takes the same run of failures as an up one to be marked down.
    if (s.up === undefined) s.up = ok ? true : s.consecutiveFailures >= h.unhealthyThreshold ? false : undefined;
    else if (s.up && s.consecutiveFailures >= h.unhealthyThreshold) s.up = false;
    else if (!s.up && s.consecutiveSuccesses >= h.healthyThreshold) s.up = true;
    this.emit('probe', { ...s });
    if (before !== s.up) this.emit('change', { ...s });
  }
}

function sameTarget(a: Backend, b: Backend): boolean {
  return a.origin === b.origin && a.basePath === b.basePath;
}

function describe(error: unknown): string {
  if (error instanceof UpstreamError) return error.failure.kind === 'timeout' ? 'timed out' : error.failure.kind;
  return (error as Error)?.message ?? 'failed';
}
