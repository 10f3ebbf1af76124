/**
 * The proxy's side of work on Taskcluster queues and of build tracking,
 * wired once per process: the store (opened when routes.yaml first names a
 * queue or a route says `track: true`, or when a store or data folder is
 * configured), the queue client, the translator the ingress hands requests
 * to, the loop that finishes forces a crash left open and follows unfinished
 * tasks so their builds get ids as they start, and the build tracker
 * (src/tracking/) that the follow loop's statuses feed.
 */
import type { BuilderDirectory } from '../ingress/builder-directory.js';
import type { Logger } from '../logging/logger.js';
import type { ProxyMetrics } from '../metrics/metrics.js';
import type { RoutingTable } from '../routing/table.js';
import { isPostgresSpec, openStore } from '../store/open.js';
import type { Store } from '../store/store.js';
import type { Upstream } from '../upstream/upstream.js';
import { BuildTracker } from '../tracking/tracker.js';
import { observeAll, type QueueObserver } from './observer.js';
import { QueueClient } from './queue-client.js';
import { TaskclusterTranslator } from './translator.js';

export interface QueueWorkOptions {
  store?: string;
  dataDir?: string;
  queueFollowIntervalMs?: number;
  /** How often builds on Buildbot-API backends are looked at (src/tracking/tracker.ts), besides their events. */
  trackingIntervalMs?: number;
  /** Told of queue work besides the metrics and the tracker (the web UI's live events). */
  observers?: readonly QueueObserver[];
}

const DEFAULT_FOLLOW_INTERVAL_MS = 5_000;
/** Unfinished tasks followed per round: a bound on queue calls, not on the tasks followed over time. */
const FOLLOW_BATCH = 200;
/**
 * The lease of recovery and following tasks: with replicas on one
 * PostgreSQL, one of them at a time does it (src/store/store.ts holdLease),
 * and another takes over at its next round when that one dies.
 */
export const QUEUE_LEASE = 'queue-follow';
/** How soon a PostgreSQL store that could not be opened is tried again. */
const STORE_RETRY_MS = 5_000;

export class QueueWork {
  private current: TaskclusterTranslator | undefined;
  private store: Store | undefined;
  private tracking: BuildTracker | undefined;
  private opening: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private table: RoutingTable | undefined;
  private round: Promise<void> = Promise.resolve();
  private leading = false;
  private retry: NodeJS.Timeout | undefined;
  private closed = false;
  readonly client: QueueClient;

  constructor(
    private readonly upstream: Upstream,
    private readonly builders: BuilderDirectory,
    private readonly metrics: ProxyMetrics,
    private readonly logger: Logger,
    private readonly options: QueueWorkOptions,
    /** Told once the translator exists (the shadower copies to queues through it). */
    private readonly onOpen?: (translator: TaskclusterTranslator) => void,
  ) {
    this.client = new QueueClient(upstream, metrics.queueCallObserved);
  }

  /** The translator, once the store is open. */
  readonly translator = (): TaskclusterTranslator | undefined => this.current;

  /** The build tracker, once the store is open: the ingress tells it of forces answered by Buildbot-API backends. */
  readonly tracker = (): BuildTracker | undefined => this.tracking;

  /** The store, once open: the admin API reads recent tasks and explains minted ids from it. */
  readonly openedStore = (): Store | undefined => (this.current === undefined ? undefined : this.store);

  /** Opens the store when a table first names a queue (or a store is configured); keeps the loop on the table in force. */
  async follow(table: RoutingTable): Promise<void> {
    this.table = table;
    const needed =
      this.options.store !== undefined || this.options.dataDir !== undefined || [...table.backends.values()].some((b) => b.kind === 'taskcluster') || table.routes.some((r) => r.track);
    if (!needed || this.current !== undefined) return;
    this.opening ??= this.open();
    try {
      await this.opening;
    } catch (error) {
      this.opening = undefined;
      // A database that is down (restarting, unreachable for a while) must not keep a replica from routing
      // what needs no store: it starts, answers what needs the store 503, and opens it as soon as it can.
      // An embedded store that cannot be opened is a mistake to fix (a folder, another process): it stops the start.
      if (!isPostgresSpec(this.options.store) || this.closed) throw error;
      this.logger.warn('the store cannot be opened; requests that need it are answered 503 until it can', { error: (error as Error).message, retryInSeconds: STORE_RETRY_MS / 1000 });
      clearTimeout(this.retry);
      this.retry = setTimeout(() => void this.follow(this.table!).catch(() => undefined), STORE_RETRY_MS);
      this.retry.unref();
    }
  }

  private async open(): Promise<void> {
    const store = await openStore(this.options.store, this.options.dataDir === undefined ? {} : { dataDir: this.options.dataDir });
    this.store = store;
    const tracker = new BuildTracker({ store, upstream: this.upstream, metrics: this.metrics, logger: this.logger, table: () => this.table!, ...(this.options.trackingIntervalMs === undefined ? {} : { intervalMs: this.options.trackingIntervalMs }) });
    const observer = observeAll([{ taskCreated: (task) => this.metrics.tasksCreated.inc({ backend: task.backend }) }, tracker.queueObserver, ...(this.options.observers ?? [])]);
    const translator = new TaskclusterTranslator(store, this.client, this.upstream, this.builders, this.logger, observer);
    translator.rememberBuilders(await store.builderNames());
    this.current = translator;
    this.tracking = tracker;
    this.onOpen?.(translator);
    this.logger.info('store open for work on queues and build tracking', { store: store.kind });
    await tracker.start();
    void this.tick();
    this.timer = setInterval(() => void this.tick(), this.options.queueFollowIntervalMs ?? DEFAULT_FOLLOW_INTERVAL_MS);
    this.timer.unref();
  }

  /** One round at a time: recovery of open forces, then unfinished tasks followed. */
  private tick(): Promise<void> {
    this.round = this.round.then(async () => {
      const translator = this.current;
      const table = this.table;
      if (translator === undefined || table === undefined || this.store === undefined) return;
      try {
        const leading = await this.store.holdLease(QUEUE_LEASE);
        if (leading !== this.leading) this.logger.info(leading ? 'this replica finishes open forces and follows queue tasks' : 'another replica finishes open forces and follows queue tasks', {});
        this.leading = leading;
        if (!leading) return;
        const recovered = await translator.forces.recover(table.backends);
        if (recovered > 0) this.metrics.recoveredTasks.inc(recovered);
        for (const task of await this.store.unfinishedTasks(FOLLOW_BATCH, Date.now())) await translator.statuses.view(task, table.backends, table.legacy);
      } catch (error) {
        this.metrics.storeErrors.inc({ operation: 'follow' });
        this.logger.warn('following queue work failed; trying again next round', { error: (error as Error).message });
      }
    });
    return this.round;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    clearInterval(this.timer);
    await this.round;
    await this.tracking?.close();
    await this.store?.close();
  }
}
