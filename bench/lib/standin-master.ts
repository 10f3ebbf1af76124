/**
 * A scripted stand-in for a Buildbot 3.7 master, for the build-tracking bench
 * (bench/build-tracking.ts). It is NOT a Buildbot master: no schedulers, no
 * workers, no database, no steps or logs. It keeps, in memory, just what the
 * proxy's build tracking reads of a master, in the shapes and with the
 * filters Buildbot 3.7's data API uses (checked against
 * buildbot/www/rest.py, ws.py and data/builds.py of Debian's buildbot 3.7):
 *
 * - `POST /api/v2/forceschedulers/<name>` (JSON-RPC `force`, application/json
 *   only): a buildset with one buildrequest per builder named, each of which
 *   starts a build at once that runs `buildMs` (by default, until the
 *   master stops) and then finishes with SUCCESS. Answers
 *   `{"id":..,"jsonrpc":"2.0","result":[bsid,{"<builderid>":brid}]}`.
 * - `GET /api/v2/builders` and `GET /api/v2/builders/<id|name>/builds`,
 *   `GET /api/v2/buildrequests/<id>`, and `GET /api/v2/builds` with the
 *   filters `buildid`, `buildid__gt`, `buildrequestid`, `builderid`,
 *   `complete`, and `order`, `limit`, `offset`, `field`. Compact JSON with
 *   sorted keys when the client accepts application/json, indented
 *   text/plain otherwise, as Buildbot does. Anything else answers 400 and is
 *   counted as `unsupported`, so a tracker that starts asking something new
 *   shows up in the bench instead of being answered wrongly.
 * - `/ws`: `startConsuming` on paths like `builds/*\/*` (acked as Buildbot
 *   acks), then `update` events for the running builds at `eventsPerSecond`,
 *   round robin: a real master announces a build's new state string at each
 *   step's start and end (setBuildStateString); and a `finished` event when a
 *   build finishes.
 * - `GET /`: 200, the web UI's page (the proxy's health checks).
 *
 * Every call is counted by what it asks (`calls()`), so the bench can report
 * what the proxy really asks of a master while it tracks builds.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import type { BuildbotBuild, BuildbotBuildrequest as Buildrequest } from '../../src/taskcluster/shapes.js';

export interface StandinMasterOptions {
  /** Builder names; builder ids are 1, 2, ... in this order. */
  builders: readonly string[];
  /** Finished builds the master has before the proxy first looks (its history), spread over the builders. */
  historyBuilds?: number;
  /** `update` events per second sent to `/ws` subscribers, round robin over the running builds. */
  eventsPerSecond?: number;
  /** How long a forced build runs before it finishes with SUCCESS (a `finished` event); by default it runs until the master stops. */
  buildMs?: number;
  port?: number;
}

export interface StandinMaster {
  url: string;
  port: number;
  /** Calls answered so far, by kind: `force`, `builds?complete=false`, `buildrequests/<id>`, `ws event`, `unsupported`... */
  calls(): Record<string, number>;
  /** Builds not finished. */
  running(): number;
  close(): Promise<void>;
}

/** A build as the data API serves it, less its properties (none here). */
type Build = Omit<BuildbotBuild, 'properties'>;

/** The `/api/v2/builds` query parameters this stand-in implements; any other is refused. */
const BUILD_QUERY = new Set(['buildid', 'buildid__gt', 'buildrequestid', 'builderid', 'complete', 'order', 'limit', 'offset', 'field']);
const ITEM_QUERY = new Set(['field']);

class BadRequest extends Error {}

export async function startStandinMaster(options: StandinMasterOptions): Promise<StandinMaster> {
  const builderIds = new Map(options.builders.map((name, i) => [name, i + 1]));
  const builds: Build[] = []; // by buildid, ascending: ids are handed out in order
  const byId = new Map<number, Build>();
  const buildsOfRequest = new Map<number, Build[]>();
  const requests = new Map<number, Buildrequest>();
  const lastNumber = new Map<number, number>();
  const runningIds = new Set<number>();
  const calls: Record<string, number> = {};
  let nextBuildid = 1;
  let nextBrid = 1;
  let nextBsid = 1;
  const nowS = () => Date.now() / 1000;

  const startBuild = (builderid: number, request: Buildrequest, at: number, finished: boolean): Build => {
    const number = (lastNumber.get(builderid) ?? 0) + 1;
    lastNumber.set(builderid, number);
    const build: Build = {
      buildid: nextBuildid++, builderid, buildrequestid: request.buildrequestid, number, workerid: 1, masterid: 1,
      started_at: at, complete: finished, complete_at: finished ? at + 60 : null, results: finished ? 0 : null,
      state_string: finished ? 'build successful' : 'building',
    };
    builds.push(build);
    byId.set(build.buildid, build);
    buildsOfRequest.set(request.buildrequestid, [...(buildsOfRequest.get(request.buildrequestid) ?? []), build]);
    if (!finished) runningIds.add(build.buildid);
    request.claimed = true;
    request.claimed_at = at;
    request.claimed_by_masterid = 1;
    return build;
  };

  const submit = (builderid: number, bsid: number, at: number): Buildrequest => {
    const request: Buildrequest = {
      buildrequestid: nextBrid++, buildsetid: bsid, builderid, priority: 0, submitted_at: at, claimed: false, claimed_at: null,
      claimed_by_masterid: null, complete: false, complete_at: null, results: -1, waited_for: false, properties: {},
    };
    requests.set(request.buildrequestid, request);
    return request;
  };

  // The history: finished builds from before the proxy, so its first scan starts past them.
  const history = options.historyBuilds ?? 0;
  for (let i = 0; i < history; i++) {
    const builderid = (i % options.builders.length) + 1;
    const at = Math.floor(nowS()) - 3600 + i;
    const request = submit(builderid, nextBsid++, at);
    startBuild(builderid, request, at, true);
    request.complete = true;
    request.complete_at = at + 60;
    request.results = 0;
  }

  const finish = (build: Build, request: Buildrequest) => {
    const at = Math.floor(nowS());
    Object.assign(build, { complete: true, complete_at: at, results: 0, state_string: 'build successful' });
    Object.assign(request, { complete: true, complete_at: at, results: 0 });
    runningIds.delete(build.buildid);
    publish(build, 'finished');
  };

  const count = (kind: string) => (calls[kind] = (calls[kind] ?? 0) + 1);

  /** Buildbot's answer to a collection or an item: `{<plural>: [...], meta}`, fields projected, keys sorted. */
  const answer = (res: http.ServerResponse, req: http.IncomingMessage, plural: string, items: object[], query: URLSearchParams, total?: number) => {
    const fields = query.getAll('field');
    const projected = fields.length === 0 ? items : items.map((item) => Object.fromEntries(fields.filter((f) => f in item).map((f) => [f, (item as Record<string, unknown>)[f]])));
    const sorted = projected.map((item) => Object.fromEntries(Object.entries(item).sort(([a], [b]) => (a < b ? -1 : 1))));
    const data = { [plural]: sorted, meta: total === undefined ? {} : { total } }; // sorted too: every plural sorts before "meta"
    const compact = (req.headers.accept ?? '').includes('application/json');
    const body = compact ? JSON.stringify(data) : JSON.stringify(data, null, 2);
    res.writeHead(200, { 'content-type': compact ? 'application/json; charset=utf-8' : 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };

  const only = (query: URLSearchParams, allowed: ReadonlySet<string>) => {
    for (const key of query.keys()) if (!allowed.has(key)) throw new BadRequest(`unsupported query parameter: ${key}`);
  };
  const int = (query: URLSearchParams, key: string): number | undefined => {
    const raw = query.get(key);
    if (raw === null) return undefined;
    const n = Number(raw);
    if (!Number.isSafeInteger(n)) throw new BadRequest(`${key} must be an integer`);
    return n;
  };

  /** `GET /api/v2/builds`, with the filters the kind of call it is named by. */
  const queryBuilds = (query: URLSearchParams): { kind: string; items: Build[]; total: number } => {
    only(query, BUILD_QUERY);
    const buildid = int(query, 'buildid');
    const after = int(query, 'buildid__gt');
    const brid = int(query, 'buildrequestid');
    const builderid = int(query, 'builderid');
    const complete = query.get('complete');
    const order = query.get('order');
    let kind: string;
    let found: Build[];
    if (buildid !== undefined) {
      kind = 'builds?buildid=';
      found = byId.has(buildid) ? [byId.get(buildid)!] : [];
    } else if (brid !== undefined) {
      kind = 'builds?buildrequestid=';
      found = buildsOfRequest.get(brid) ?? [];
    } else if (after !== undefined) {
      kind = 'builds?buildid__gt=';
      // Build ids are dense and ascending: the first one past `after` is at index `after`.
      found = builds.slice(Math.max(0, after));
    } else if (complete === 'false') {
      kind = 'builds?complete=false';
      found = [...runningIds].map((id) => byId.get(id)!);
    } else {
      kind = order === '-buildid' ? 'builds?order=-buildid' : 'builds (other)';
      found = builds;
    }
    if (builderid !== undefined) found = found.filter((b) => b.builderid === builderid);
    if (complete !== null) {
      if (complete !== 'true' && complete !== 'false') throw new BadRequest('complete must be true or false');
      found = found.filter((b) => b.complete === (complete === 'true'));
    }
    if (order !== null && order !== 'buildid' && order !== '-buildid') throw new BadRequest(`unsupported order: ${order}`);
    // Every list above is in ascending build id order already.
    if (order === '-buildid') found = [...found].reverse();
    const total = found.length;
    const offset = int(query, 'offset') ?? 0;
    const limit = int(query, 'limit');
    found = found.slice(offset, limit === undefined ? undefined : offset + limit);
    return { kind, items: found, total };
  };

  const force = (body: string): { result: [number, Record<string, number>]; id: unknown } => {
    const call = JSON.parse(body) as { method?: unknown; id?: unknown; params?: { builderNames?: unknown } };
    if (call.method !== 'force') throw new BadRequest('only the JSON-RPC method "force" is implemented');
    const names = call.params?.builderNames;
    if (!Array.isArray(names) || names.length === 0) throw new BadRequest('params.builderNames must name builders');
    const bsid = nextBsid++;
    const at = Math.floor(nowS());
    const brids: Record<string, number> = {};
    for (const name of names) {
      const builderid = builderIds.get(String(name));
      if (builderid === undefined) throw new BadRequest(`unknown builder: ${String(name)}`);
      const request = submit(builderid, bsid, at);
      const build = startBuild(builderid, request, at, false);
      if (options.buildMs !== undefined) setTimeout(() => finish(build, request), options.buildMs).unref();
      brids[String(builderid)] = request.buildrequestid;
    }
    return { result: [bsid, brids], id: call.id ?? null };
  };

  const route = (req: http.IncomingMessage, res: http.ServerResponse, body: string) => {
    const url = new URL(req.url ?? '/', 'http://master');
    const path = url.pathname;
    const query = url.searchParams;
    if (req.method === 'GET' && path === '/') {
      count('/ (health)');
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end('<!doctype html><title>Buildbot</title>');
    }
    if (req.method === 'POST' && /^\/api\/v2\/forceschedulers\/[^/]+$/.test(path)) {
      count('force');
      if (!(req.headers['content-type'] ?? '').startsWith('application/json')) throw new BadRequest('Invalid content-type (use application/json)');
      const { result, id } = force(body);
      const text = JSON.stringify({ id, jsonrpc: '2.0', result });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      return res.end(text);
    }
    if (req.method !== 'GET') throw new BadRequest(`${req.method} ${path} is not implemented`);
    if (path === '/api/v2/builders') {
      count('builders');
      only(query, ITEM_QUERY);
      const list = options.builders.map((name, i) => ({ builderid: i + 1, name, masterids: [1], description: null, tags: [] }));
      return answer(res, req, 'builders', list, query, list.length);
    }
    let m = /^\/api\/v2\/builders\/([^/]+)\/builds$/.exec(path);
    if (m) {
      count('builders/<b>/builds');
      const key = decodeURIComponent(m[1]!);
      const builderid = /^\d+$/.test(key) ? Number(key) : builderIds.get(key);
      if (builderid === undefined) throw new BadRequest(`unknown builder: ${key}`);
      query.set('builderid', String(builderid));
      const order = query.get('order');
      // By number within one builder, numbers rise with build ids.
      if (order === 'number' || order === '-number') query.set('order', order === 'number' ? 'buildid' : '-buildid');
      const { items, total } = queryBuilds(query);
      return answer(res, req, 'builds', items, query, total);
    }
    m = /^\/api\/v2\/buildrequests\/(\d+)$/.exec(path);
    if (m) {
      count('buildrequests/<id>');
      only(query, ITEM_QUERY);
      const request = requests.get(Number(m[1]));
      if (request === undefined) {
        res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
        return res.end(JSON.stringify({ error: 'not found' }));
      }
      return answer(res, req, 'buildrequests', [request], query);
    }
    if (path === '/api/v2/builds') {
      const { kind, items, total } = queryBuilds(query);
      count(kind);
      return answer(res, req, 'builds', items, query, total);
    }
    throw new BadRequest(`${path} is not implemented`);
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      try {
        route(req, res, Buffer.concat(chunks).toString('utf8'));
      } catch (error) {
        count('unsupported');
        const text = JSON.stringify({ error: (error as Error).message });
        if (!res.headersSent) res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      }
    });
  });
  server.keepAliveTimeout = 60_000;

  // ---- /ws: Buildbot's subscription protocol, and update events of the running builds
  const subscribers = new Map<WebSocket, string[][]>();
  const wss = new WebSocketServer({ server, path: '/ws' });
  wss.on('connection', (socket) => {
    count('ws connect');
    subscribers.set(socket, []);
    socket.on('message', (data) => {
      let msg: { cmd?: unknown; path?: unknown; _id?: unknown };
      try {
        msg = JSON.parse(String(data)) as typeof msg;
      } catch {
        return;
      }
      if (msg.cmd === 'startConsuming' && typeof msg.path === 'string') {
        count('ws startConsuming');
        subscribers.get(socket)?.push(msg.path.split('/'));
        socket.send(JSON.stringify({ msg: 'OK', code: 200, _id: msg._id }));
      } else if (msg.cmd === 'ping') socket.send(JSON.stringify({ msg: 'pong', code: 200, _id: msg._id }));
      else socket.send(JSON.stringify({ error: `unsupported command ${String(msg.cmd)}`, code: 400, _id: msg._id }));
    });
    socket.on('close', () => subscribers.delete(socket));
  });
  const matches = (pattern: string[], key: string[]) => pattern.length === key.length && pattern.every((p, i) => p === '*' || p === key[i]);
  /** Sends a build's event to the subscribers of a matching path, as Buildbot's mq does: `{k, m}`. */
  function publish(build: Build, event: string): void {
    const key = ['builds', String(build.buildid), event];
    let text: string | undefined;
    for (const [socket, patterns] of subscribers) {
      if (!patterns.some((p) => matches(p, key))) continue;
      text ??= JSON.stringify({ k: key.join('/'), m: { ...build, properties: {} } });
      socket.send(text);
      count('ws event');
    }
  }
  let eventCursor = 0;
  let eventDebt = 0;
  const TICK_MS = 100;
  const events = setInterval(() => {
    if (runningIds.size === 0 || subscribers.size === 0) return;
    eventDebt += ((options.eventsPerSecond ?? 0) * TICK_MS) / 1000;
    const running = [...runningIds];
    for (; eventDebt >= 1; eventDebt--) {
      const build = byId.get(running[eventCursor++ % running.length]!)!;
      build.state_string = `step ${eventCursor % 20} running`;
      publish(build, 'update');
    }
  }, TICK_MS);
  events.unref();

  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    calls: () => ({ ...calls }),
    running: () => runningIds.size,
    close: async () => {
      clearInterval(events);
      for (const socket of subscribers.keys()) socket.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
