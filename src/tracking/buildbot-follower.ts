/**
 * Follows builds on one Buildbot-API backend (the legacy master, or a second
 * master standing in for the new side) to their end, for the build comparison.
 *
 * What is followed: every buildrequest a force through the proxy created
 * there, and, on the legacy master, every build of a job type whose route
 * says `track: true` (builds its own schedulers start included).
 *
 * How: the master's `/ws` events (a build's `new` and `finished`; not its
 * `update`s, which change nothing a round looks for) say promptly that
 * something changed, and a polling round finds what: new builds by a cursor over build
 * ids (`buildid__gt`), finished ones by the master's list of unfinished builds
 * (`complete=false`). Events can be missed (a reconnect, a restart of
 * either side), so the rounds also run on a timer: they alone are enough, the
 * events only make them sooner. Every step is kept in the store, and a
 * finished build is recorded under its buildid once (Store.recordOutcome),
 * so a restart loses nothing and counts nothing twice.
 */
import type { Logger } from '../logging/logger.js';
import type { Backend } from '../routing/table.js';
import type { Store } from '../store/store.js';
import { isResultCode, RETRY } from '../taskcluster/results.js';
import type { CloseEvent, MessageEvent, WebSocket } from 'undici';
import type { Upstream } from '../upstream/upstream.js';
import { buildbotBuildKey, type BuildOutcome, type OpenBuild, type TrackedRequest } from './outcome.js';

/** What a round needs of a build (`GET /api/v2/builds`). */
export interface BuildbotBuild {
  buildid: number;
  builderid: number;
  buildrequestid: number;
  started_at: number;
  complete: boolean;
  complete_at: number | null;
  results: number | null;
}

const BUILD_FIELDS = ['buildid', 'builderid', 'buildrequestid', 'started_at', 'complete', 'complete_at', 'results'];
/** Builds read per page of the scan for new builds, and pages per round: a bound on one round's work. */
const SCAN_PAGE = 500;
const SCAN_PAGES_PER_ROUND = 20;
/** A tracked buildrequest with no build seen after this long is asked about directly (cancelled before it started, or its build was missed). */
const QUIET_REQUEST_MS = 30_000;
const QUIET_REQUESTS_PER_ROUND = 20;
const MAX_ANSWER_BYTES = 32 * 1024 * 1024;
const CALL_TIMEOUT_MS = 10_000;
/**
 * How often a round reads afresh from the store what is followed (other
 * replicas store the buildrequests of the forces they answer): reading it all
 * costs in proportion to the work open, so event-driven rounds in between use
 * what is known.
 */
const RELOAD_INTERVAL_MS = 5_000;
/** Builds seen whose buildrequest was not known, kept to be looked at again after the next reload; past it the oldest go (the quiet-request check still finds them). */
const UNCLAIMED_MEMORY = 10_000;
/** The master's events that start a round: a build started, a build finished. */
const EVENT_PATHS = ['builds/*/new', 'builds/*/finished'];
/** Events say "look now"; rounds a burst of them asks for run once, this long after the first. */
const EVENT_DEBOUNCE_MS = 200;
const RECONNECT_MIN_MS = 1_000;
const RECONNECT_MAX_MS = 60_000;

export interface FollowerDeps {
  store: Store;
  upstream: Pick<Upstream, 'fetch' | 'webSocket'>;
  logger: Logger;
  /** Records a finished build (once) and counts it; resolves false when it was known. */
  record: (outcome: BuildOutcome) => Promise<boolean>;
  /** Whether builds of a job type not forced through the proxy are followed on this backend (`track: true`). */
  tracksAll: (jobType: string) => boolean;
  /** Counts a failed step of following (events, scan, poll, request, store). */
  failed: (operation: string, error: unknown) => void;
  /** A build of a job type is under way here (a force's request, or a tracked build seen started). */
  underWay: (jobType: string) => void;
  now?: () => number;
}

export class BuildbotFollower {
  private readonly now: () => number;
  private readonly requests = new Map<number, TrackedRequest>();
  private readonly builds = new Map<number, OpenBuild>();
  /** Buildrequests one of whose builds was seen: they count in flight through the build. */
  private readonly requestsWithBuild = new Set<number>();
  private readonly builderNames = new Map<number, string>();
  private readonly submittedAt = new Map<number, number>();
  /** When a quiet buildrequest was last asked about (kept across reloads from the store). */
  private readonly askedAt = new Map<number, number>();
  /** Builds a round saw whose buildrequest was not known then (another replica's force, not read yet): looked at again after the next reload. */
  private unclaimed: BuildbotBuild[] = [];
  private cursor: number | undefined;
  private loaded: Promise<void> | undefined;
  /** When the store was last read (0: never, or a lease just taken: read at the next round). */
  private reloadedAt = 0;
  private round: Promise<void> = Promise.resolve();
  private roundAsked: NodeJS.Timeout | undefined;
  private socket: WebSocket | undefined;
  private reconnectDelay = RECONNECT_MIN_MS;
  private reconnectTimer: NodeJS.Timeout | undefined;
  /** True while events are not arriving, so an outage is counted once. */
  private eventsDown = false;
  private listening = false;
  private closed = false;

  constructor(
    readonly backend: Backend,
    private readonly deps: FollowerDeps,
  ) {
    this.now = deps.now ?? Date.now;
  }

  /** Builds in flight here, by job type: open builds, and tracked buildrequests none of whose builds has started. */
  inFlight(): Map<string, number> {
    const counts = new Map<string, number>();
    const add = (jobType: string) => counts.set(jobType, (counts.get(jobType) ?? 0) + 1);
    for (const build of this.builds.values()) add(build.jobType);
    for (const request of this.requests.values()) if (!this.requestsWithBuild.has(request.buildrequestId)) add(request.jobType);
    return counts;
  }

  /**
   * A force through the proxy created these buildrequests here (the answer's
   * `{builderid: brid}`). Their builds may already exist, and a scan may have
   * passed them before this was known: they are asked for at once, after the
   * requests are stored, so no build falls between the two.
   */
  forced(brids: ReadonlyMap<number, number>, submittedAt: number): Promise<void> {
    const work = this.round.then(async () => {
      await this.load();
      await this.startCursor();
      const requests: TrackedRequest[] = [];
      for (const [builderid, buildrequestId] of brids) {
        const jobType = await this.builderName(builderid);
        if (jobType !== undefined) requests.push({ backend: this.backend.name, buildrequestId, jobType, submittedAt });
      }
      if (requests.length === 0) return;
      await this.deps.store.trackRequests(requests);
      for (const r of requests) {
        this.requests.set(r.buildrequestId, r);
        this.deps.underWay(r.jobType);
      }
      for (const r of requests) for (const build of await this.readBuilds(`buildrequestid=${r.buildrequestId}`)) await this.seen(build);
    });
    this.round = work.catch(() => undefined);
    return work;
  }

  /**
   * Listens to the master's events (rounds then also run soon after one), or
   * stops: only the replica holding the tracking lease listens and polls.
   */
  listen(on: boolean): void {
    // Taking the lease over: another replica may have moved the cursor and closed work since this one last read.
    if (on && !this.listening) this.reloadedAt = 0;
    this.listening = on;
    if (on && this.socket === undefined && this.reconnectTimer === undefined) this.connect();
    if (!on) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = undefined;
      const socket = this.socket;
      this.socket = undefined;
      socket?.close();
    }
  }

  /** One round of following, after the previous one (never two at once). */
  poll(): Promise<void> {
    this.round = this.round.then(() => this.followRound());
    return this.round;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.roundAsked);
    this.listen(false);
    await this.round;
  }

  /** The store's view, read once for forces (which need only the cursor and add to it). */
  private load(): Promise<void> {
    this.loaded ??= this.reload().catch((error: unknown) => {
      this.loaded = undefined;
      throw error;
    });
    return this.loaded;
  }

  /**
   * Reads what is followed afresh from the store: other replicas add the
   * buildrequests of forces they answered, and the one following before this
   * one (a lease taken over) moved the cursor.
   */
  private async reload(): Promise<void> {
    const name = this.backend.name;
    const [requests, builds, cursor] = await Promise.all([this.deps.store.openRequests(name), this.deps.store.openBuilds(name), this.deps.store.trackingCursor(name)]);
    this.requests.clear();
    this.builds.clear();
    this.requestsWithBuild.clear();
    for (const r of requests) this.requests.set(r.buildrequestId, r);
    for (const b of builds) {
      this.builds.set(b.buildid, b);
      this.requestsWithBuild.add(b.buildrequestId);
    }
    if (cursor !== undefined && (this.cursor === undefined || cursor > this.cursor)) this.cursor = cursor;
    for (const id of this.askedAt.keys()) if (!this.requests.has(id)) this.askedAt.delete(id);
    this.loaded = Promise.resolve();
    this.reloadedAt = this.now();
  }

  private async followRound(): Promise<void> {
    if (this.closed) return;
    if (this.now() - this.reloadedAt >= RELOAD_INTERVAL_MS) {
      const unclaimed = this.unclaimed;
      this.unclaimed = [];
      try {
        await this.reload();
      } catch (error) {
        this.unclaimed = unclaimed;
        return this.deps.failed('store', error);
      }
      await this.step('store', async () => {
        for (const build of unclaimed) if (this.requests.has(build.buildrequestid)) await this.seen(build);
      });
    }
    await this.step('scan', () => this.scanNewBuilds());
    await this.step('poll', () => this.pollOpenBuilds());
    await this.step('request', () => this.askAboutQuietRequests());
  }

  private async step(operation: string, run: () => Promise<void>): Promise<void> {
    try {
      await run();
    } catch (error) {
      this.deps.failed(operation, error);
    }
  }

  /** New builds since the cursor: those of tracked work are followed (or recorded, if already finished). */
  private async scanNewBuilds(): Promise<void> {
    const from = await this.startCursor();
    this.cursor = from;
    for (let page = 0; page < SCAN_PAGES_PER_ROUND; page++) {
      const found = await this.readBuilds(`buildid__gt=${this.cursor}&order=buildid&limit=${SCAN_PAGE}`);
      for (const build of found) await this.seen(build);
      const last = found.at(-1);
      if (last !== undefined) {
        this.cursor = last.buildid;
        await this.deps.store.setTrackingCursor(this.backend.name, last.buildid);
      }
      if (found.length < SCAN_PAGE) return;
    }
  }

  /** The cursor, set on first sight to the master's newest build: its history before the proxy is not the comparison's. */
  private async startCursor(): Promise<number> {
    if (this.cursor === undefined) {
      const newest = await this.readBuilds('order=-buildid&limit=1');
      this.cursor = newest[0]?.buildid ?? 0;
      await this.deps.store.setTrackingCursor(this.backend.name, this.cursor);
    }
    return this.cursor;
  }

  /** Open builds the master no longer lists as unfinished have finished: read and recorded. */
  private async pollOpenBuilds(): Promise<void> {
    if (this.builds.size === 0) return;
    const running = await this.runningBuildIds();
    for (const open of [...this.builds.values()]) {
      if (running.has(open.buildid)) continue;
      const [build] = await this.readBuilds(`buildid=${open.buildid}`);
      if (build === undefined) {
        // Gone from the master (its database reset): nothing will finish it.
        this.builds.delete(open.buildid);
        continue;
      }
      await this.seen(build);
    }
  }

  /**
   * Tracked buildrequests with no build after a while: their builds are read
   * directly (a build the scan passed before the force's answer arrived), and
   * a request the master completed without a build (cancelled while waiting)
   * stops being awaited.
   */
  private async askAboutQuietRequests(): Promise<void> {
    const quietSince = (r: TrackedRequest) => this.askedAt.get(r.buildrequestId) ?? r.submittedAt;
    const quiet = [...this.requests.values()].filter((r) => !this.requestsWithBuild.has(r.buildrequestId) && this.now() - quietSince(r) >= QUIET_REQUEST_MS);
    for (const request of quiet.slice(0, QUIET_REQUESTS_PER_ROUND)) {
      for (const build of await this.readBuilds(`buildrequestid=${request.buildrequestId}`)) await this.seen(build);
      if (this.requestsWithBuild.has(request.buildrequestId) || !this.requests.has(request.buildrequestId)) continue;
      const complete = await this.buildrequestComplete(request.buildrequestId);
      if (complete) await this.closeRequest(request.buildrequestId);
      else this.askedAt.set(request.buildrequestId, this.now()); // still waiting for a worker: asked again after another quiet spell
    }
  }

  /** A build seen in any round: followed if it is tracked work, recorded when finished. */
  private async seen(build: BuildbotBuild): Promise<void> {
    const request = this.requests.get(build.buildrequestid);
    const open = this.builds.get(build.buildid);
    let jobType = request?.jobType ?? open?.jobType;
    let origin: OpenBuild['origin'] = request !== undefined || open?.origin === 'proxy' ? 'proxy' : 'tracked';
    if (jobType === undefined) {
      const name = await this.builderName(build.builderid);
      if (name === undefined || !this.deps.tracksAll(name)) return this.keepUnclaimed(build);
      jobType = name;
      origin = 'tracked';
    }
    if (request !== undefined) this.requestsWithBuild.add(request.buildrequestId);
    const submittedAt = open?.submittedAt ?? (await this.submittedAtOf(build.buildrequestid));
    if (!build.complete || build.complete_at === null || !isResultCode(build.results)) {
      if (open !== undefined) return;
      const tracked: OpenBuild = { backend: this.backend.name, buildid: build.buildid, buildrequestId: build.buildrequestid, jobType, submittedAt, startedAt: build.started_at * 1000, origin };
      await this.deps.store.trackBuild(tracked);
      this.builds.set(build.buildid, tracked);
      this.deps.underWay(jobType);
      return;
    }
    await this.deps.record({
      backend: this.backend.name,
      buildKey: buildbotBuildKey(build.buildid),
      jobType,
      result: build.results,
      submittedAt,
      startedAt: build.started_at * 1000,
      finishedAt: build.complete_at * 1000,
      origin,
      recordedAt: this.now(),
    });
    this.builds.delete(build.buildid);
    // A retried build is followed by another build of the same request: keep awaiting it.
    if (request !== undefined && build.results !== RETRY) await this.closeRequest(request.buildrequestId);
  }

  /** A build of no buildrequest known here: one another replica's force made, if the store says so at the next reload. */
  private keepUnclaimed(build: BuildbotBuild): void {
    this.unclaimed.push(build);
    if (this.unclaimed.length > UNCLAIMED_MEMORY) this.unclaimed.shift();
  }

  private async closeRequest(buildrequestId: number): Promise<void> {
    await this.deps.store.closeRequest(this.backend.name, buildrequestId);
    this.requests.delete(buildrequestId);
    this.requestsWithBuild.delete(buildrequestId);
    this.submittedAt.delete(buildrequestId);
    this.askedAt.delete(buildrequestId);
  }

  // ---------------------------------------------------------------- the master's API

  private async readBuilds(query: string): Promise<BuildbotBuild[]> {
    const body = await this.getJson(`/api/v2/builds?${query}${BUILD_FIELDS.map((f) => `&field=${f}`).join('')}`);
    const builds = (body as { builds?: unknown }).builds;
    if (!Array.isArray(builds)) throw new Error('a builds answer without a builds list');
    return builds.filter(isBuild);
  }

  /** The ids of every build the master has not finished: one small answer, however many are open. */
  private async runningBuildIds(): Promise<Set<number>> {
    const body = (await this.getJson('/api/v2/builds?complete=false&field=buildid&field=complete')) as { builds?: { buildid?: unknown }[] };
    if (!Array.isArray(body.builds)) throw new Error('a builds answer without a builds list');
    return new Set(body.builds.map((b) => b.buildid).filter((id): id is number => typeof id === 'number'));
  }

  /** The buildrequest's `submitted_at` (epoch ms), once per buildrequest, or null when the master does not say. */
  private async submittedAtOf(buildrequestId: number): Promise<number | null> {
    const known = this.submittedAt.get(buildrequestId);
    if (known !== undefined) return known;
    const body = (await this.getJson(`/api/v2/buildrequests/${buildrequestId}?field=submitted_at`)) as { buildrequests?: { submitted_at?: unknown }[] };
    const at = body.buildrequests?.[0]?.submitted_at;
    if (typeof at !== 'number') return null;
    this.submittedAt.set(buildrequestId, at * 1000);
    return at * 1000;
  }

  private async buildrequestComplete(buildrequestId: number): Promise<boolean> {
    const body = (await this.getJson(`/api/v2/buildrequests/${buildrequestId}?field=complete`)) as { buildrequests?: { complete?: unknown }[] };
    const request = body.buildrequests?.[0];
    // A buildrequest the master does not know will never get a build.
    return request === undefined || request.complete === true;
  }

  /** The builder's name by this backend's builder id (a second master numbers its builders its own way). */
  private async builderName(builderid: number): Promise<string | undefined> {
    if (!this.builderNames.has(builderid)) {
      const body = (await this.getJson('/api/v2/builders?field=builderid&field=name')) as { builders?: { builderid?: unknown; name?: unknown }[] };
      for (const b of body.builders ?? []) if (typeof b.builderid === 'number' && typeof b.name === 'string') this.builderNames.set(b.builderid, b.name);
    }
    return this.builderNames.get(builderid);
  }

  private async getJson(path: string): Promise<unknown> {
    const answer = await this.deps.upstream.fetch(this.backend, {
      path,
      headers: ['accept', 'application/json', 'user-agent', 'strangler-proxy build tracking'],
      timeoutMs: CALL_TIMEOUT_MS,
      maxBytes: MAX_ANSWER_BYTES,
    });
    if (answer.status !== 200) throw new Error(`GET ${path.split('?')[0]} answered ${answer.status}`);
    return JSON.parse(answer.body.toString('utf8')) as unknown;
  }

  // ---------------------------------------------------------------- events

  private connect(): void {
    this.reconnectTimer = undefined;
    if (this.closed || !this.listening) return;
    let socket: WebSocket;
    try {
      socket = this.deps.upstream.webSocket(this.backend, '/ws');
    } catch (error) {
      this.eventsLost(error);
      return;
    }
    this.socket = socket;
    let opened = false;
    socket.addEventListener('open', () => {
      opened = true;
      this.eventsDown = false;
      this.deps.logger.info('following a backend\'s build events', { backend: this.backend.name });
      this.reconnectDelay = RECONNECT_MIN_MS;
      for (const [i, path] of EVENT_PATHS.entries()) socket.send(JSON.stringify({ cmd: 'startConsuming', path, _id: i + 1 }));
      // Whatever happened while no events could arrive is found by a round now.
      this.askForRound();
    });
    socket.addEventListener('message', (event: MessageEvent) => {
      if (typeof event.data === 'string' && event.data.includes('"k"')) this.askForRound();
    });
    socket.addEventListener('error', () => undefined); // 'close' follows
    socket.addEventListener('close', (event: CloseEvent) => {
      if (this.socket !== socket) return; // closed on purpose (listen(false), close())
      this.socket = undefined;
      if (this.closed || !this.listening) return;
      this.eventsLost(new Error(opened ? `the events connection closed (${event.code})` : 'no events connection (the master has no /ws, or it is down)'));
    });
  }

  /** Counted and logged once per outage (the rounds on the timer carry on without events), then retried with backoff. */
  private eventsLost(error: unknown): void {
    if (!this.eventsDown) this.deps.failed('events', error);
    this.eventsDown = true;
    this.reconnectLater();
  }

  private reconnectLater(): void {
    if (this.closed) return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => this.connect(), this.reconnectDelay);
    this.reconnectTimer.unref();
    this.reconnectDelay = Math.min(RECONNECT_MAX_MS, this.reconnectDelay * 2);
  }

  private askForRound(): void {
    if (this.roundAsked !== undefined || this.closed) return;
    this.roundAsked = setTimeout(() => {
      this.roundAsked = undefined;
      void this.poll();
    }, EVENT_DEBOUNCE_MS);
    this.roundAsked.unref();
  }
}

function isBuild(value: unknown): value is BuildbotBuild {
  const b = value as Partial<BuildbotBuild> | null;
  return typeof b === 'object' && b !== null && typeof b.buildid === 'number' && typeof b.builderid === 'number' && typeof b.buildrequestid === 'number' && typeof b.started_at === 'number';
}
