/**
 * The Shadower's comparison of whole pairs: a copy answered by a Buildbot-API
 * backend over a real socket, and a copy a queue's translation answers into
 * a RecordingResponse, both compared with the primary's Buildbot answer by
 * JSON fields, the route's ignoreFields left out, and counted.
 */
import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { createLogger } from '../../../src/logging/logger.js';
import { ProxyMetrics } from '../../../src/metrics/metrics.js';
import { decide } from '../../../src/routing/decide.js';
import { sendData } from '../../../src/taskcluster/answers.js';
import { RecordingResponse, asClientResponse } from '../../../src/shadow/recording.js';
import { Shadower, type ShadowRequest, type ShadowTicket } from '../../../src/shadow/shadow.js';
import { renderAnswer } from '../../../src/buildbot-api/collection.js';
import { Upstream } from '../../../src/upstream/upstream.js';
import { tableFrom } from '../../support/tables.js';

/** Keys in the order Buildbot writes them (sorted). */
const BUILD = { builderid: 3, buildid: 1, buildrequestid: 1, complete: true, complete_at: 1700000010, masterid: 1, number: 1, properties: {}, results: 0, started_at: 1700000000, state_string: 'build successful', workerid: 1 };

describe('shadow/shadow: Shadower compares a pair by JSON fields', () => {
  let server: http.Server;
  /** What the Buildbot-API shadow backend answers next: Buildbot's text/plain JSON. */
  let next = { status: 200, contentType: 'text/plain; charset=utf-8', body: '' };
  let lines: Array<Record<string, unknown>>;
  let shadower: Shadower;
  let metrics: ProxyMetrics;
  let upstream: Upstream;

  before(async () => {
    server = http.createServer((_req, res) => res.writeHead(next.status, { 'content-type': next.contentType }).end(next.body));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  beforeEach(() => {
    lines = [];
    const stream = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    metrics = new ProxyMetrics({ defaultMetrics: false });
    upstream = new Upstream();
    shadower = new Shadower(upstream, metrics, createLogger({ stream, level: 'warn' }));
  });
  afterEach(() => upstream.close());

  const table = () =>
    tableFrom(`backends:
  buildbot: { url: http://127.0.0.1:1, legacy: true }
  mirror: { url: http://127.0.0.1:${(server.address() as AddressInfo).port} }
  queue:
    kind: taskcluster
    rootUrl: http://127.0.0.1:1
    task: { taskQueueId: proj/linux, payload: { command: [make] } }
routes:
  - jobType: linux64-opt
    backend: buildbot
    shadow: { backend: mirror, ignoreFields: [buildid, masterid, started_at, complete_at] }
  - jobType: win32-debug
    backend: buildbot
    shadow: { backend: queue, ignoreFields: [buildid, masterid, started_at, complete_at] }
`);

  const request = (builder: string): ShadowRequest => ({
    method: 'GET',
    url: `/api/v2/builders/${builder}/builds`,
    pathname: `/api/v2/builders/${builder}/builds`,
    client: { rawHeaders: [], socket: {} as never },
    body: null,
    requestId: 'r1',
    jobTypeLabel: builder,
  });

  /** The primary's answer as a real Buildbot 3.7 master writes it (indented, keys sorted, text/plain). */
  const primaryAnswer = (builds: unknown[]) => {
    const rendered = renderAnswer({ builds, meta: { total: builds.length } }, undefined);
    return { status: 200, contentType: rendered.contentType, body: Buffer.from(rendered.body) };
  };

  async function shadowCounts(backend: string): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    const text = await metrics.registry.metrics();
    for (const m of text.matchAll(/^strangler_shadow_requests_total\{([^}]*)\} (\d+)$/gm)) {
      if (!m[1]!.includes(`backend="${backend}"`)) continue;
      counts[/result="(\w+)"/.exec(m[1]!)![1]!] = Number(m[2]);
    }
    return counts;
  }

  async function settled(): Promise<void> {
    for (let i = 0; i < 200 && shadower.inFlightCount() > 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(shadower.inFlightCount(), 'the pair to settle').to.equal(0);
  }

  function start(builder: string, draw = 0): ShadowTicket {
    const t = table();
    const ticket = shadower.start(t, decide(t, { jobTypes: [builder] }), request(builder), draw);
    expect(ticket?.note).to.equal('sent');
    return ticket as ShadowTicket;
  }

  describe('a Buildbot-API shadow backend answering text/plain JSON', () => {
    it('counts a match when only ignored fields differ', async () => {
      next = { status: 200, contentType: 'text/plain; charset=utf-8', body: JSON.stringify({ builds: [{ ...BUILD, buildid: 40, masterid: 2, started_at: 1700000100, complete_at: 1700000111 }], meta: { total: 1 } }) };
      start('linux64-opt').primaryDone(primaryAnswer([BUILD]));
      await settled();
      expect(await shadowCounts('mirror')).to.deep.equal({ match: 1 });
    });

    it('counts a mismatch, and logs the field, when a field that is not ignored differs', async () => {
      next = { status: 200, contentType: 'text/plain; charset=utf-8', body: JSON.stringify({ builds: [{ ...BUILD, buildid: 40, results: 2 }], meta: { total: 1 } }) };
      start('linux64-opt').primaryDone(primaryAnswer([BUILD]));
      await settled();
      expect(await shadowCounts('mirror')).to.deep.equal({ mismatch: 1 });
      const logged = lines.find((l) => l['message'] === 'shadow mismatch')!;
      expect(logged).to.include({ compared: 'json', primary: 'buildbot', shadow: 'mirror' });
      expect(logged['differences']).to.deep.equal([{ path: 'builds[0].results', primary: 0, shadow: 2 }]);
    });

    it('logs a value too deeply nested to write as JSON by name, and still counts it', async () => {
      const depth = 100_000;
      next = { status: 200, contentType: 'text/plain', body: `{"builds": ${'['.repeat(depth)}${']'.repeat(depth)}, "meta": {"total": 1}}` };
      start('linux64-opt').primaryDone(primaryAnswer([BUILD]));
      await settled();
      expect(await shadowCounts('mirror')).to.deep.equal({ mismatch: 1 });
      const logged = lines.find((l) => l['message'] === 'shadow mismatch')!;
      expect(logged['differences']).to.deep.equal([{ path: 'builds[0]', primary: `${JSON.stringify(BUILD).slice(0, 200)}…`, shadow: '(too deeply nested to show)' }]);
    });
  });

  describe("a queue's translated copy: Buildbot-shaped JSON compared with the primary's Buildbot answer", () => {
    /** The translation's part: its answer written through the real Buildbot-shape writer into a recorder. */
    const translateWith = (builds: unknown[], accept: string | undefined) => {
      shadower.translatedCopy = async (_backend, _decision, _table, copy, limit) => {
        const recording = new RecordingResponse(limit);
        sendData({ res: asClientResponse(recording), tags: ['x-strangler-shadow', '1'], accept: copy.accept ?? accept, method: copy.method }, 'builds', builds, builds.length);
        return recording.captured();
      };
    };

    it('counts a match when only ignored fields differ, in either of the forms Buildbot writes', async () => {
      for (const accept of [undefined, 'application/json']) {
        translateWith([{ ...BUILD, buildid: 1_000_000_000_001, masterid: 0, started_at: 1700000222, complete_at: 1700000333 }], accept);
        start('win32-debug').primaryDone(primaryAnswer([BUILD]));
        await settled();
      }
      expect(await shadowCounts('queue')).to.deep.equal({ match: 2 });
    });

    it('counts a mismatch when a field that is not ignored differs', async () => {
      translateWith([{ ...BUILD, buildid: 1_000_000_000_001, state_string: 'failed' }], undefined);
      start('win32-debug').primaryDone(primaryAnswer([BUILD]));
      await settled();
      expect(await shadowCounts('queue')).to.deep.equal({ mismatch: 1 });
      expect(lines.find((l) => l['message'] === 'shadow mismatch')!['differences']).to.deep.equal([{ path: 'builds[0].state_string', primary: 'build successful', shadow: 'failed' }]);
    });
  });
});
