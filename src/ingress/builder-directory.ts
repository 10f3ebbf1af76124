/**
 * Builder ids to names, from the legacy master's `GET /api/v2/builders`.
 *
 * Paths such as `/api/v2/builders/12/builds` name a builder by id; routing
 * needs its name. Ids are stable in Buildbot, so the map is kept and refreshed
 * only when an unknown id turns up (a new builder), at most once per
 * `minRefreshIntervalMs` so that made-up ids cannot hammer the master. A
 * failed lookup answers "unknown", and the request goes to default.
 */
import type { Backend } from '../routing/table.js';
import type { Upstream } from '../upstream/upstream.js';

export interface BuilderDirectoryOptions {
  timeoutMs?: number;
  minRefreshIntervalMs?: number;
  /** Called when a refresh fails, for the log. */
  onError?: (error: Error, backend: Backend) => void;
}

/** Far more than a master with thousands of builders answers with two fields each. */
const BUILDER_LIST_LIMIT = 32 * 1024 * 1024;

export class BuilderDirectory {
  private names = new Map<number, string>();
  private origin = '';
  private refreshing: Promise<void> | undefined;
  private lastRefreshAt = 0;
  private readonly timeoutMs: number;
  private readonly minRefreshIntervalMs: number;
  private readonly onError: ((error: Error, backend: Backend) => void) | undefined;

  constructor(
    private readonly upstream: Pick<Upstream, 'fetch'>,
    options: BuilderDirectoryOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? 2_000;
    this.minRefreshIntervalMs = options.minRefreshIntervalMs ?? 1_000;
    this.onError = options.onError;
  }

  /** Every builder name the legacy master reported at the last refresh. */
  allNames(): string[] {
    return [...this.names.values()];
  }

  /** Fetches the builder list now (at startup and periodically, for migration progress). */
  async preload(legacy: Backend): Promise<void> {
    this.track(legacy);
    return this.refreshing ?? this.startRefresh(legacy);
  }

  /** One refresh at a time; its end is when the next may start. */
  private startRefresh(legacy: Backend): Promise<void> {
    this.refreshing = this.refresh(legacy).finally(() => {
      this.refreshing = undefined;
      this.lastRefreshAt = Date.now();
    });
    return this.refreshing;
  }

  private track(legacy: Backend): void {
    const base = legacy.origin + legacy.basePath;
    if (base !== this.origin) {
      // The legacy master moved (config reload): its ids are not the old one's.
      this.origin = base;
      this.names = new Map();
      this.lastRefreshAt = 0;
    }
  }

  /** The legacy master's builderid for a name (a force answers with it, whichever side runs the build). */
  async idFor(name: string, legacy: Backend): Promise<number | undefined> {
    this.track(legacy);
    const find = () => {
      for (const [id, known] of this.names) if (known === name) return id;
      return undefined;
    };
    const known = find();
    if (known !== undefined) return known;
    if (!this.refreshing && Date.now() - this.lastRefreshAt >= this.minRefreshIntervalMs) void this.startRefresh(legacy);
    await this.refreshing;
    return find();
  }

  async nameFor(id: number, legacy: Backend): Promise<string | undefined> {
    this.track(legacy);
    const known = this.names.get(id);
    if (known !== undefined) return known;
    if (!this.refreshing && Date.now() - this.lastRefreshAt >= this.minRefreshIntervalMs) void this.startRefresh(legacy);
    await this.refreshing;
    return this.names.get(id);
  }

  private async refresh(legacy: Backend): Promise<void> {
    const base = legacy.origin + legacy.basePath;
    try {
      const answer = await this.upstream.fetch(legacy, {
        path: '/api/v2/builders?field=builderid&field=name',
        headers: ['user-agent', 'strangler-proxy builder lookup', 'accept', 'application/json'],
        timeoutMs: this.timeoutMs,
        maxBytes: BUILDER_LIST_LIMIT,
      });
      if (answer.status !== 200) throw new Error(`GET /api/v2/builders answered ${answer.status}`);
      const payload = JSON.parse(answer.body.toString('utf8')) as { builders?: unknown } | null;
      if (payload === null || typeof payload !== 'object') throw new Error('GET /api/v2/builders: the answer is not a JSON object');
      if (!Array.isArray(payload.builders)) throw new Error('GET /api/v2/builders: no "builders" list in the answer');
      const names = new Map<number, string>();
      for (const builder of payload.builders as Array<{ builderid?: unknown; name?: unknown }>) {
        if (typeof builder?.builderid === 'number' && typeof builder.name === 'string') names.set(builder.builderid, builder.name);
      }
      if (base === this.origin) this.names = names;
    } catch (error) {
      this.onError?.(error as Error, legacy);
    }
  }
}
