/**
 * A Buildbot client that speaks only Buildbot 3.7's own REST and JSON-RPC API,
 * as an existing tool (a CI script, a dashboard) does: it knows nothing of
 * queues, tasks or the proxy. Tests point it at the proxy and run the same
 * code whichever side runs the work, so any difference a client could see
 * shows up as a difference in what this code reads.
 */

/** Buildbot's result codes (buildbot/process/results.py). */
export const RESULTS = { SUCCESS: 0, WARNINGS: 1, FAILURE: 2, SKIPPED: 3, EXCEPTION: 4, RETRY: 5, CANCELLED: 6 } as const;

export type Json = Record<string, unknown>;

/** A JSON-RPC answer: `result` or `error`, with the HTTP status it came with. */
export interface RpcAnswer {
  status: number;
  result?: unknown;
  error?: { code: number; message: string };
  /** Response headers (the proxy says which backend answered; a client would ignore them). */
  headers: Headers;
}

export class BuildbotClient {
  constructor(readonly baseUrl: string) {}

  /** `GET /api/v2<path>`, parsed (Buildbot sends JSON as text/plain to some clients). */
  async get(path: string): Promise<Json> {
    const res = await fetch(`${this.baseUrl}/api/v2${path}`, { headers: { accept: 'application/json' } });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`GET ${path}: ${res.status} ${text.slice(0, 500)}`);
    return JSON.parse(text) as Json;
  }

  /** `GET` of a text resource (a log's `/raw`). */
  async text(path: string): Promise<{ status: number; body: string; contentType: string | null }> {
    const res = await fetch(`${this.baseUrl}/api/v2${path}`);
    return { status: res.status, body: await res.text(), contentType: res.headers.get('content-type') };
  }

  async rpc(path: string, method: string, params: Json = {}): Promise<RpcAnswer> {
    const res = await fetch(`${this.baseUrl}/api/v2${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', method, id: 1, params }),
    });
    const text = await res.text();
    let parsed: Json = {};
    try {
      parsed = JSON.parse(text) as Json;
    } catch {
      parsed = { error: { code: -1, message: `not JSON: ${text.slice(0, 300)}` } };
    }
    return { status: res.status, headers: res.headers, ...(parsed.result !== undefined || 'result' in parsed ? { result: parsed.result } : {}), ...(parsed.error ? { error: parsed.error as RpcAnswer['error'] & object } : {}) };
  }

  /** The force scheduler "force": `[bsid, {"<builderid>": brid}]` on success. */
  force(builderNames: string[], params: Json = {}): Promise<RpcAnswer> {
    return this.rpc('/forceschedulers/force', 'force', { builderNames, reason: 'forced by the e2e client', ...params });
  }

  /** The one object of a read by id. */
  async one(path: string, plural: string): Promise<Json> {
    const answer = await this.get(path);
    const list = answer[plural] as Json[] | undefined;
    if (!Array.isArray(list) || list.length !== 1) throw new Error(`GET ${path}: expected one ${plural} item, got ${JSON.stringify(answer).slice(0, 300)}`);
    return list[0]!;
  }

  buildrequest(brid: number): Promise<Json> {
    return this.one(`/buildrequests/${brid}`, 'buildrequests');
  }

  buildset(bsid: number): Promise<Json> {
    return this.one(`/buildsets/${bsid}`, 'buildsets');
  }

  build(buildid: number): Promise<Json> {
    return this.one(`/builds/${buildid}`, 'builds');
  }

  /** The builds of a buildrequest, as Buildbot's UI finds them. */
  async buildsOf(brid: number): Promise<Json[]> {
    return (await this.get(`/buildrequests/${brid}/builds`)).builds as Json[];
  }

  /** Polls a buildrequest until `complete` (or `until` says so). */
  async waitForRequest(brid: number, timeoutMs: number, until: (br: Json) => boolean = (br) => br.complete === true): Promise<Json> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const br = await this.buildrequest(brid);
      if (until(br)) return br;
      if (Date.now() > deadline) throw new Error(`buildrequest ${brid} not there after ${timeoutMs} ms: ${JSON.stringify(br)}`);
      await sleep(200);
    }
  }

  /** Polls a buildset until `complete`: Buildbot completes it a moment after its last buildrequest. */
  async waitForBuildset(bsid: number, timeoutMs: number): Promise<Json> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const bs = await this.buildset(bsid);
      if (bs.complete === true) return bs;
      if (Date.now() > deadline) throw new Error(`buildset ${bsid} not complete after ${timeoutMs} ms: ${JSON.stringify(bs)}`);
      await sleep(200);
    }
  }

  /** Polls until the buildrequest has a build (it started). */
  async waitForBuild(brid: number, timeoutMs: number, until: (b: Json) => boolean = () => true): Promise<Json> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const builds = await this.buildsOf(brid);
      const last = builds.at(-1);
      if (last !== undefined && until(last)) return last;
      if (Date.now() > deadline) throw new Error(`buildrequest ${brid} has no build as wanted after ${timeoutMs} ms: ${JSON.stringify(builds)}`);
      await sleep(200);
    }
  }

  stop(buildid: number): Promise<RpcAnswer> {
    return this.rpc(`/builds/${buildid}`, 'stop', { reason: 'stopped by the e2e client' });
  }

  rebuild(buildid: number): Promise<RpcAnswer> {
    return this.rpc(`/builds/${buildid}`, 'rebuild', {});
  }

  cancel(brid: number): Promise<RpcAnswer> {
    return this.rpc(`/buildrequests/${brid}`, 'cancel', { reason: 'cancelled by the e2e client' });
  }

  /** Everything a client reads about one finished build: its steps, each step's logs, a log's raw text and its chunks. */
  async readBuild(buildid: number): Promise<{ build: Json; steps: Json[]; logs: Json[]; raw: { status: number; body: string; contentType: string | null }; contents: Json }> {
    const build = await this.build(buildid);
    const steps = (await this.get(`/builds/${buildid}/steps`)).steps as Json[];
    // The step that ran the work: Buildbot's has a log named stdio (its first step, worker_preparation, has none).
    const logs: Json[] = [];
    for (const step of steps) logs.push(...((await this.get(`/steps/${step.stepid as number}/logs`)).logs as Json[]));
    const stdio = logs.find((l) => l.slug === 'stdio');
    if (stdio === undefined) throw new Error(`build ${buildid} has no stdio log: ${JSON.stringify(logs)}`);
    const raw = await this.text(`/logs/${stdio.logid as number}/raw`);
    const contents = await this.get(`/logs/${stdio.logid as number}/contents`);
    return { build, steps, logs, raw, contents };
  }

  /** `/builders/{name}/builds`, newest first. */
  async buildsOfBuilder(name: string, query = 'order=-number&limit=50'): Promise<{ builds: Json[]; total: number | undefined }> {
    const answer = await this.get(`/builders/${encodeURIComponent(name)}/builds?${query}`);
    return { builds: answer.builds as Json[], total: (answer.meta as { total?: number } | undefined)?.total };
  }
}

/** `[bsid, {"<builderid>": brid}]` from a force or rebuild answer, checked. */
export function forceIds(answer: RpcAnswer): { bsid: number; brids: Map<number, number> } {
  const result = answer.result;
  if (!Array.isArray(result) || result.length !== 2 || typeof result[0] !== 'number' || result[1] === null || typeof result[1] !== 'object') {
    throw new Error(`not a force answer: ${answer.status} ${JSON.stringify(answer.error ?? result)}`);
  }
  const brids = new Map<number, number>();
  for (const [k, v] of Object.entries(result[1] as Record<string, unknown>)) {
    if (!/^[0-9]+$/.test(k) || typeof v !== 'number') throw new Error(`not a force answer: ${JSON.stringify(result)}`);
    brids.set(Number(k), v);
  }
  return { bsid: result[0], brids };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
