/**
 * The proxy's side of work on Taskcluster queues, wired once per process:
 * the store (opened when routes.yaml first names a queue, or when a store is
 * configured), the queue client, the translator the ingress hands requests
 * to, and the loop that finishes forces a crash left open and follows
 * unfinished tasks so their builds get ids as they start.
 */
import type { BuilderDirectory } from '../ingress/builder-directory.js';
import type { Logger } from '../logging/logger.js';
import type { ProxyMetrics } from '../metrics/metrics.js';
import type { RoutingTable } from '../routing/table.js';
import { openStore } from '../store/open.js';
import type { Store } from '../store/store.js';
import type { Upstream } from '../upstream/upstream.js';
import { QueueClient } from './queue-client.js';
import { TaskclusterTranslator } from './translator.js';

export interface QueueWorkOptions {
  store?: string;
  dataDir?: string;
  queueFollowIntervalMs?: number;
}

const DEFAULT_FOLLOW_INTERVAL_MS = 5_000;
/** Unfinished tasks followed per round: a bound on queue calls, not on the tasks followed over time. */
const FOLLOW_BATCH = 200;

export class QueueWork {
  private current: TaskclusterTranslator | undefined;
  private store: Store | undefined;
  private opening: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private table: RoutingTable | undefined;
  private round: Promise<void> = Promise.resolve();
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

  /** The store, once open: the admin API reads recent tasks and explains minted ids from it. */
  readonly openedStore = (): Store | undefined => (this.current === undefined ? undefined : this.store);

  /** Opens the store when a table first names a queue (or a store is configured); keeps the loop on the table in force. */
  async follow(table: RoutingTable): Promise<void> {
    this.table = table;
    const needed = this.options.store !== undefined || [...table.backends.values()].some((b) => b.kind === 'taskcluster');
    if (!needed || this.current !== undefined) return;
    this.opening ??= this.open();
    await this.opening;
  }

  private async open(): Promise<void> {
    const store = await openStore(this.options.store, this.options.dataDir === undefined ? {} : { dataDir: this.options.dataDir });
    this.store = store;
    const translator = new TaskclusterTranslator(store, this.client, this.upstream, this.builders, this.logger, (backend) => this.metrics.tasksCreated.inc({ backend }));
    translator.rememberBuilders(await store.builderNames());
    this.current = translator;
    this.onOpen?.(translator);
    this.logger.info('store open for work on queues', { store: store.kind });
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
        const recovered = await translator.forces.recover(table.backends);
        if (recovered > 0) this.metrics.recoveredTasks.inc(recovered);
        for (const task of await this.store.unfinishedTasks(FOLLOW_BATCH)) await translator.statuses.view(task, table.backends, table.legacy);
      } catch (error) {
        this.metrics.storeErrors.inc({ operation: 'follow' });
        this.logger.warn('following queue work failed; trying again next round', { error: (error as Error).message });
      }
    });
    return this.round;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.round;
    await this.store?.close();
  }
}
