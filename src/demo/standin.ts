/**
 * A small stand-in backend that answers the Buildbot REST and JSON-RPC calls
 * the demo and the tests use, in Buildbot 3.7's shapes: builders, a force
 * that makes a buildset, a buildrequest and (after `startDelayMs`) a build
 * that runs for `runMs` and succeeds, their reads by id and as collections
 * (with Buildbot's filters, order and paging), the build's one step and its
 * `stdio` log. It is not Buildbot: tests that must prove behaviour against
 * Buildbot itself start real masters (test/support/buildbot.ts). Every answer
 * carries `X-Served-By: <name>` so one can see which side answered.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { applyQuery, ENTITIES, renderAnswer, type BuildbotAnswer } from '../buildbot-api/collection.js';
import type { BuildbotBuild, BuildbotBuildrequest, BuildbotBuildset, BuildbotLog, BuildbotStep } from '../taskcluster/shapes.js';

export interface StandinOptions {
  name: string;
  builders: readonly string[];
  port?: number;
  host?: string;
  /** How long a forced buildrequest waits before its build starts; 500 ms by default. */
  startDelayMs?: number;
  /** How long a build runs; 3 s by default. */
  runMs?: number;
}

export interface ForceRecord {
  scheduler: string;
  builderNames: string[];
  at: number;
}

export interface StandinBackend {
  readonly name: string;
  readonly url: string;
  readonly port: number;
  /** Force calls received, in order. */
  readonly forces: ForceRecord[];
  /** Requests received, any kind. */
  requestCount(): number;
  /** The ids the next force's first builder gets: its buildset, its buildrequest and (once it starts) its build. */
  nextIds(): { bsid: number; brid: number; buildid: number };
  close(): Promise<void>;
}

/** Finished builds each builder has when the stand-in starts, so listings are not empty. */
const HISTORY_PER_BUILDER = 2;
const SUCCESS = 0;
const QUERYABLE: ReadonlySet<string> = new Set(Object.values(ENTITIES).map((e) => e.plural));

interface Work {
  bsid: number;
  brid: number;
  buildid: number;
  builderid: number;
  number: number;
  reason: string;
  revision: string | null;
  branch: string | null;
  submittedMs: number;
  startMs: number;
  endMs: number;
}

const seconds = (ms: number) => Math.floor(ms / 1000);

export async function startStandinBackend(options: StandinOptions): Promise<StandinBackend> {
  const builders = options.builders.map((name, i) => ({ builderid: i + 1, name }));
  const startDelayMs = options.startDelayMs ?? 500;
  const runMs = options.runMs ?? 3000;
  const forces: ForceRecord[] = [];
  const work: Work[] = [];
  const lastNumber = new Map<number, number>();
  let requests = 0;
  let nextId = 1;

  /** One buildset with one buildrequest per builder; Buildbot's ids are one sequence per table, so here they advance together. */
  function submit(builderids: number[], reason: string, params: { revision?: unknown; branch?: unknown }, submittedMs: number): [number, Record<string, number>] {
    const bsid = nextId;
    const requestIds: Record<string, number> = {};
    for (const builderid of builderids) {
      const id = nextId++;
      const number = (lastNumber.get(builderid) ?? 0) + 1;
      lastNumber.set(builderid, number);
      const startMs = submittedMs + startDelayMs;
      work.push({
        bsid, brid: id, buildid: id, builderid, number, reason, submittedMs, startMs, endMs: startMs + runMs,
        revision: typeof params.revision === 'string' && params.revision !== '' ? params.revision : null,
        branch: typeof params.branch === 'string' && params.branch !== '' ? params.branch : null,
      });
      requestIds[String(builderid)] = id;
    }
    if (builderids.length === 0) nextId++;
    return [bsid, requestIds];
  }

  const born = Date.now() - 3600_000;
  for (let k = 0; k < HISTORY_PER_BUILDER; k++) {
    for (const b of builders) submit([b.builderid], 'history', {}, born + k * 600_000);
  }

  const started = (w: Work, now: number) => now >= w.startMs;
  const finished = (w: Work, now: number) => now >= w.endMs;

  function buildrequestOf(w: Work, now: number): BuildbotBuildrequest {
    const claimed = started(w, now);
    const complete = finished(w, now);
    return {
      buildrequestid: w.brid, buildsetid: w.bsid, builderid: w.builderid, priority: 0,
      claimed, claimed_at: claimed ? seconds(w.startMs) : null, claimed_by_masterid: claimed ? 1 : null,
      complete, complete_at: complete ? seconds(w.endMs) : null, results: complete ? SUCCESS : -1,
      submitted_at: seconds(w.submittedMs), waited_for: false, properties: null,
    };
  }

  function buildsetOf(bsid: number, now: number): BuildbotBuildset | undefined {
    const mine = work.filter((w) => w.bsid === bsid);
    const first = mine[0];
    if (first === undefined) return undefined;
    const complete = mine.every((w) => finished(w, now));
    return {
      bsid, external_idstring: null, reason: first.reason, submitted_at: seconds(first.submittedMs),
      complete, complete_at: complete ? Math.max(...mine.map((w) => seconds(w.endMs))) : null, results: complete ? SUCCESS : -1,
      sourcestamps: [{ ssid: bsid, branch: first.branch, revision: first.revision, project: '', repository: '', codebase: '', created_at: seconds(first.submittedMs), patch: null }],
      parent_buildid: null, parent_relationship: null,
    };
  }

  function buildOf(w: Work, now: number): BuildbotBuild {
    const complete = finished(w, now);
    return {
      buildid: w.buildid, number: w.number, builderid: w.builderid, buildrequestid: w.brid, workerid: 1, masterid: 1,
      started_at: seconds(w.startMs), complete, complete_at: complete ? seconds(w.endMs) : null, results: complete ? SUCCESS : null,
      state_string: complete ? 'build successful' : 'building', properties: {},
    };
  }

  function stepOf(w: Work, now: number): BuildbotStep {
    const complete = finished(w, now);
    return {
      stepid: w.buildid, number: 0, name: 'shell', buildid: w.buildid, started_at: seconds(w.startMs),
      complete, complete_at: complete ? seconds(w.endMs) : null, results: complete ? SUCCESS : null,
      state_string: complete ? "'make all'" : "'make all' running", urls: [], hidden: false,
    };
  }

  /** The build's log as far as it got: a line per quarter of its run, then the exit. */
  function logLines(w: Work, now: number): string[] {
    const builder = builders.find((b) => b.builderid === w.builderid)!;
    const lines = [`make all (${builder.name}, build ${w.number} on the ${options.name} stand-in)`, ` in dir /worker/${builder.name}/build`];
    const quarters = Math.min(3, Math.floor(((now - w.startMs) * 4) / runMs));
    for (let i = 1; i <= quarters; i++) lines.push(`step ${i}/3: working`);
    if (finished(w, now)) lines.push('program finished with exit code 0');
    return lines;
  }

  function logOf(w: Work, now: number): BuildbotLog {
    return { logid: w.buildid, name: 'stdio', slug: 'stdio', stepid: w.buildid, complete: finished(w, now), num_lines: logLines(w, now).length, type: 's' };
  }

  const server: Server = createServer((req, res) => {
    requests++;
    res.setHeader('x-served-by', options.name);
    const url = new URL(req.url ?? '/', 'http://standin');
    if (req.method === 'POST') return void handleRpc(req, res, url.pathname);
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, { status: 400, contentType: 'text/plain; charset=utf-8', body: JSON.stringify({ error: 'invalid HTTP method' }) });
    let reply: BuildbotAnswer;
    try {
      reply = answer(url, req.headers.accept, Date.now());
    } catch (error) {
      reply = { status: 500, contentType: 'text/plain; charset=utf-8', body: JSON.stringify({ error: (error as Error).message }) };
    }
    send(res, reply);
  });

  function answer(url: URL, accept: string | undefined, now: number): BuildbotAnswer {
    const parts = url.pathname.split('/').filter(Boolean).map((p) => decodeURIComponent(p));
    if (parts[0] !== 'api' || parts[1] !== 'v2') return notFound(`Invalid path: ${url.pathname.slice(1)}`);
    const [, , kind, key, sub, subKey, sub2, sub2Key, sub3] = parts;
    const id = key !== undefined && /^[0-9]+$/.test(key) ? Number(key) : undefined;
    const one = (plural: string, item: unknown) => (item === undefined ? notFound('not found') : renderAnswer({ [plural]: [item], meta: {} }, accept));
    const many = (plural: string, items: readonly object[]) => {
      // Filters, order and paging for the entity types the collection module knows; the rest (builders, log chunks) as they are.
      if (!QUERYABLE.has(plural)) return renderAnswer({ [plural]: items, meta: { total: items.length } }, accept);
      const out = applyQuery(items, url.searchParams, plural);
      if (!out.ok) return out.answer;
      return renderAnswer({ [plural]: out.items, meta: { total: out.total } }, accept);
    };
    const builderOf = (k: string | undefined) => builders.find((b) => b.name === k || String(b.builderid) === k);
    const workOfBuild = (buildid: number | undefined) => work.find((w) => w.buildid === buildid && started(w, now));
    const stepAnswers = (w: Work | undefined, rest: Array<string | undefined>): BuildbotAnswer => {
      if (w === undefined) return notFound('not found');
      const [stepKey, logs, slug, what] = rest;
      if (stepKey === undefined) return many('steps', [stepOf(w, now)]);
      if (stepKey !== '0' && stepKey !== String(w.buildid) && stepKey !== 'shell') return notFound('not found');
      if (logs === undefined) return one('steps', stepOf(w, now));
      if (logs !== 'logs') return notFound(`Invalid path: ${url.pathname.slice(1)}`);
      if (slug === undefined) return many('logs', [logOf(w, now)]);
      if (slug !== 'stdio') return notFound('not found');
      return logAnswers(w, what);
    };
    const logAnswers = (w: Work, what: string | undefined): BuildbotAnswer => {
      if (what === undefined) return one('logs', logOf(w, now));
      const lines = logLines(w, now);
      if (what === 'raw') return { status: 200, contentType: 'text/plain; charset=utf-8', body: lines.map((l) => `${l}\n`).join('') };
      if (what === 'contents') return many('logchunks', [{ logid: w.buildid, firstline: 0, content: lines.map((l) => `o${l}\n`).join('') }]);
      return notFound(`Invalid path: ${url.pathname.slice(1)}`);
    };
    const builds = () => work.filter((w) => started(w, now)).map((w) => buildOf(w, now));

    switch (kind) {
      case 'builders': {
        if (key === undefined) return many('builders', builders.map(describe));
        const builder = builderOf(key);
        if (builder === undefined) return notFound('not found');
        if (sub === undefined) return one('builders', describe(builder));
        if (sub === 'builds') {
          const mine = builds().filter((b) => b.builderid === builder.builderid);
          if (subKey === undefined) return many('builds', mine);
          const build = mine.find((b) => String(b.number) === subKey);
          if (sub2 === undefined) return one('builds', build);
          if (sub2 !== 'steps') return notFound(`Invalid path: ${url.pathname.slice(1)}`);
          return stepAnswers(workOfBuild(build?.buildid), parts.slice(7));
        }
        if (sub === 'buildrequests' && subKey === undefined) return many('buildrequests', work.filter((w) => w.builderid === builder.builderid).map((w) => buildrequestOf(w, now)));
        break;
      }
      case 'buildrequests': {
        if (key === undefined) return many('buildrequests', work.map((w) => buildrequestOf(w, now)));
        const w = work.find((x) => x.brid === id);
        if (sub === undefined) return one('buildrequests', w && buildrequestOf(w, now));
        if (sub === 'builds' && subKey === undefined) return w === undefined ? notFound('not found') : many('builds', builds().filter((b) => b.buildrequestid === w.brid));
        break;
      }
      case 'buildsets': {
        if (key === undefined) return many('buildsets', [...new Set(work.map((w) => w.bsid))].map((bsid) => buildsetOf(bsid, now)!));
        if (sub === undefined) return one('buildsets', id === undefined ? undefined : buildsetOf(id, now));
        break;
      }
      case 'builds': {
        if (key === undefined) return many('builds', builds());
        const w = workOfBuild(id);
        if (sub === undefined) return one('builds', w && buildOf(w, now));
        if (sub === 'steps') return stepAnswers(w, [subKey, sub2, sub2Key, sub3]);
        break;
      }
      case 'steps': {
        const w = workOfBuild(id);
        if (sub === undefined) return one('steps', w && stepOf(w, now));
        if (sub === 'logs') return stepAnswers(w, ['0', 'logs', subKey, sub2]);
        break;
      }
      case 'logs': {
        const w = workOfBuild(id);
        if (w === undefined) return notFound('not found');
        return logAnswers(w, sub);
      }
    }
    return notFound(`Invalid path: ${url.pathname.slice(1)}`);
  }

  function describe(builder: { builderid: number; name: string }) {
    return { ...builder, description: `${builder.name} on the ${options.name} stand-in`, masterids: [1], tags: [] };
  }

  async function handleRpc(req: IncomingMessage, res: ServerResponse, pathname: string): Promise<void> {
    const chunks: Buffer[] = [];
    try {
      for await (const chunk of req) chunks.push(chunk as Buffer);
    } catch {
      return;
    }
    if (!String(req.headers['content-type'] ?? '').startsWith('application/json')) {
      return json(res, 400, { jsonrpc: '2.0', id: null, error: { code: -32600, message: 'Invalid JSON-RPC Request' } });
    }
    let call: { id?: unknown; method?: unknown; params?: { builderNames?: unknown; reason?: unknown; revision?: unknown; branch?: unknown } };
    try {
      call = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return json(res, 400, { jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error' } });
    }
    const match = /^\/api\/v2\/forceschedulers\/([^/]+)$/.exec(pathname);
    if (!match || call.method !== 'force') {
      return json(res, 404, { jsonrpc: '2.0', id: call.id ?? null, error: { code: -32601, message: 'method not found' } });
    }
    const names = Array.isArray(call.params?.builderNames) ? (call.params.builderNames as string[]) : builders.map((b) => b.name);
    forces.push({ scheduler: match[1]!, builderNames: names, at: Date.now() });
    const ids = names.flatMap((name) => builders.find((b) => b.name === name)?.builderid ?? []);
    const reason = typeof call.params?.reason === 'string' ? call.params.reason : `A build was forced by '' : `;
    json(res, 200, { id: call.id ?? null, jsonrpc: '2.0', result: submit(ids, reason, call.params ?? {}, Date.now()) });
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    name: options.name,
    url: `http://127.0.0.1:${port}`,
    port,
    forces,
    requestCount: () => requests,
    nextIds: () => ({ bsid: nextId, brid: nextId, buildid: nextId }),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function notFound(message: string): BuildbotAnswer {
  return { status: 404, contentType: 'text/plain; charset=utf-8', body: JSON.stringify({ error: message }) };
}

function send(res: ServerResponse, answer: BuildbotAnswer): void {
  const body = res.req.method === 'HEAD' ? '' : answer.body;
  res.writeHead(answer.status, { 'content-type': answer.contentType, 'content-length': Buffer.byteLength(answer.body) });
  res.end(body);
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
