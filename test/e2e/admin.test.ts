/**
 * The admin API end to end: the real proxy (both listeners) in front of
 * recording upstreams, asked over real sockets, with and without the admin
 * token.
 */
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import request from 'supertest';
import type { ConfigVersion } from '../../src/config/history.js';
import { routesYaml, startTestProxy, waitFor, type TestProxy } from '../support/proxy.js';
import { startUpstream, type TestUpstream } from '../support/upstream.js';

const ROUTES = `routes:
  - jobType: linux64-*
    backend: taskservice
  - jobType: android-api-16-test
    split: { taskservice: 25, buildbot: 75 }
    stickyBy: [header:X-Push-Id]
    fallback: buildbot
  - jobType: win32-debug
    backend: buildbot
    shadow: { backend: taskservice, percent: 10 }
    retries: 2
`;

/**
 * startTestProxy with the admin token options, which that helper does not
 * take (yet): the same set-up, log lines captured the same way.
 */
const startProxyWithAuth = (yaml: string, auth: { adminToken?: string; protectAdminReads?: boolean }): Promise<TestProxy> =>
  startTestProxy(yaml, { pollIntervalMs: 200, ...auth });

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

describe('e2e: admin API', function () {
  let legacy: TestUpstream;
  let next: TestUpstream;
  let t: TestProxy;
  let yaml: string;

  beforeEach(async () => {
    legacy = await startUpstream('buildbot');
    next = await startUpstream('taskservice');
    yaml = routesYaml({ buildbot: { url: legacy.url, legacy: true }, taskservice: { url: next.url } }, ROUTES);
  });
  afterEach(async () => {
    await t?.close();
    await legacy.close();
    await next.close();
  });

  /** 6 linux64-opt (taskservice), 4 win32-debug (buildbot), 2 naming no job type (buildbot, by default). */
  async function sendTraffic(): Promise<void> {
    for (let i = 0; i < 6; i++) await request(t.url).get('/api/v2/builders/linux64-opt/builds').expect(200);
    for (let i = 0; i < 4; i++) await request(t.url).get('/api/v2/builders/win32-debug').expect(200);
    for (let i = 0; i < 2; i++) await request(t.url).get('/api/v2/builds').expect(200);
  }

  describe('read endpoints (no token configured: reads are open)', () => {
    beforeEach(async () => {
      t = await startTestProxy(yaml, { pollIntervalMs: 200 });
    });

    it('GET /routes: the effective table, its file, hash, load time and text, and what each backend owns', async () => {
      const res = await request(t.adminUrl).get('/routes').expect(200).expect('content-type', /json/);
      const body = res.body;
      expect(body).to.include({ file: t.configFile, hash: sha256(yaml), text: yaml, legacy: 'buildbot', default: 'buildbot' });
      expect(Date.parse(body.loadedAt)).to.be.closeTo(Date.now(), 60_000);
      expect(body.backends.map((b: { name: string; url: string; legacy: boolean; default: boolean }) => [b.name, b.url, b.legacy, b.default])).to.deep.equal([
        ['buildbot', legacy.url, true, true],
        ['taskservice', next.url, false, false],
      ]);
      expect(body.routes).to.have.length(3);
      expect(body.routes[1]).to.deep.equal({
        index: 1,
        jobType: 'android-api-16-test',
        kind: 'exact',
        split: true,
        targets: [
          { backend: 'taskservice', weight: 25, share: 0.25 },
          { backend: 'buildbot', weight: 75, share: 0.75 },
        ],
        stickyBy: ['header:X-Push-Id'],
        shadow: null,
        fallback: 'buildbot',
        retries: 0,
        overriddenBy: null,
      });
      expect(body.routes[2]).to.deep.include({ jobType: 'win32-debug', shadow: { backend: 'taskservice', percent: 10, mutating: false, ignoreFields: [] }, retries: 2 });

      const [buildbot, taskservice] = body.backends;
      expect(taskservice.owns.unmatched).to.equal(false);
      expect(taskservice.owns.rules).to.deep.equal([
        { index: 0, jobType: 'linux64-*', kind: 'glob', share: 1 },
        { index: 1, jobType: 'android-api-16-test', kind: 'exact', share: 0.25 },
      ]);
      expect(taskservice.owns.jobTypes).to.deep.equal([{ jobType: 'android-api-16-test', share: 0.25, rule: 'android-api-16-test' }]);
      expect(buildbot.owns.unmatched).to.equal(true);
      expect(buildbot.owns.jobTypes).to.deep.equal([
        { jobType: 'android-api-16-test', share: 0.75, rule: 'android-api-16-test' },
        { jobType: 'win32-debug', share: 1, rule: 'win32-debug' },
      ]);

      // A job type the proxy has seen joins the owner's list: the task service learns it owns linux64-opt.
      await request(t.url).get('/api/v2/builders/linux64-opt').expect(200);
      const after = await request(t.adminUrl).get('/routes').expect(200);
      expect(after.body.backends[1].owns.jobTypes).to.deep.include({ jobType: 'linux64-opt', share: 1, rule: 'linux64-*' });
    });

    it('GET /explain: the decision for a request described in the query; bad parameters are 400 with a message', async () => {
      const res = await request(t.adminUrl).get('/explain').query({ method: 'get', path: '/api/v2/builders/linux64-opt/builds' }).expect(200);
      expect(res.body).to.include({ method: 'GET', backend: 'taskservice', jobType: 'linux64-opt', source: 'path', reason: 'route' });
      const header = await request(t.adminUrl).get('/explain?method=GET&path=/api/v2/builds/5&header=X-Job-Type:%20win32-debug').expect(200);
      expect(header.body).to.include({ backend: 'buildbot', reason: 'header', jobType: 'win32-debug' });

      const bad = async (query: string, message: RegExp) => {
        const r = await request(t.adminUrl).get(`/explain${query}`).expect(400).expect('content-type', /json/);
        expect(r.body.code).to.equal('BAD_REQUEST');
        expect(r.body.error).to.match(message);
      };
      await bad('', /needs "method" and "path"/);
      await bad('?method=GET', /needs "method" and "path"/);
      await bad('?method=G%20T&path=/x', /"method" must be an HTTP method/);
      await bad('?method=GET&path=x', /"path" must be a request path starting with "\/"/);
      await bad('?method=GET&method=POST&path=/x', /"method" must be given once/);
      await bad('?method=GET&path=/x&header=nocolon', /"header" must be "Name: value"/);
      await bad('?method=GET&path=/x&bogus=1', /unknown query parameter "bogus"/);
    });

    it('GET /backends: health, circuit, in-flight and the recent error ratio per backend', async () => {
      next.handle((_req, res) => {
        res.writeHead(503);
        res.end('down for a moment');
      });
      for (let i = 0; i < 4; i++) await request(t.url).get('/api/v2/builders/win32-debug').expect(200);
      for (let i = 0; i < 6; i++) await request(t.url).get('/api/v2/builders/linux64-opt').expect(503);
      // The circuit opened at the 5th failure (failureThreshold 5); now the proxy answers 503 itself and sends nothing.
      await request(t.url).get('/api/v2/builders/linux64-x').expect(503);
      await waitFor(async () => (await request(t.adminUrl).get('/backends')).body.backends.every((b: { up: boolean | null }) => b.up !== null) || undefined, 5000, 'the first health probes');
      const res = await request(t.adminUrl).get('/backends').expect(200);
      const [buildbot, taskservice] = res.body.backends;
      expect(buildbot).to.deep.include({ name: 'buildbot', url: legacy.url, legacy: true, default: true, up: true, circuit: 'closed', inFlight: 0, lastProbeError: null });
      expect(buildbot.recent).to.deep.equal({ window: '5m', requests: 4, errors: 0, errorRatio: 0 });
      expect(Date.parse(buildbot.lastProbeAt)).to.be.closeTo(Date.now(), 10_000);
      // Counted for the service: its six 503s and the proxy's own 503 for the request the open circuit held back.
      expect(taskservice).to.deep.include({ name: 'taskservice', legacy: false, circuit: 'open', inFlight: 0 });
      expect(taskservice.recent).to.deep.equal({ window: '5m', requests: 7, errors: 7, errorRatio: 1 });
      await request(t.adminUrl).get('/backends?x=1').expect(400);
    });

    it('GET /progress: known job types and requests per backend and per route, counts and shares, 5 minutes and since start', async () => {
      await sendTraffic();
      const res = await request(t.adminUrl).get('/progress').expect(200);
      const p = res.body;
      // Known: android-api-16-test and win32-debug (exact routes), linux64-opt (traffic).
      // taskservice: linux64-opt whole + a quarter of android-api-16-test = 1.25 of 3; buildbot 1.75 of 3.
      expect(p.knownJobTypeNames).to.deep.equal(['android-api-16-test', 'linux64-opt', 'win32-debug']);
      expect(p.summary).to.deep.include({ knownJobTypes: 3, jobTypesOnNew: 1.25, jobTypeShare: 0.4167 });
      for (const w of ['5m', '1h', 'all']) expect(p.summary.requests[w], w).to.deep.equal({ total: 12, onNew: 6, share: 0.5 });
      const byName = Object.fromEntries(p.backends.map((b: { name: string }) => [b.name, b]));
      expect(byName.taskservice.jobTypes).to.deep.equal({ count: 1.25, share: 0.4167 });
      expect(byName.buildbot.jobTypes).to.deep.equal({ count: 1.75, share: 0.5833 });
      expect(byName.taskservice.requests['5m']).to.deep.equal({ requests: 6, errors: 0, errorRatio: 0, share: 0.5 });
      expect(byName.buildbot.requests.all).to.deep.equal({ requests: 6, errors: 0, errorRatio: 0, share: 0.5 });

      const rule = (name: string) => p.routes.find((r: { rule: string }) => r.rule === name);
      expect(rule('linux64-*')).to.deep.include({ index: 0, inTable: true, jobTypes: { count: 1, byBackend: { taskservice: 1 } } });
      expect(rule('linux64-*').requests['5m']).to.deep.equal({ total: 6, byBackend: { taskservice: { requests: 6, errors: 0, errorRatio: 0, share: 1 } } });
      expect(rule('android-api-16-test').jobTypes).to.deep.equal({ count: 1, byBackend: { taskservice: 0.25, buildbot: 0.75 } });
      expect(rule('(default)').requests.all.byBackend).to.deep.equal({ buildbot: { requests: 2, errors: 0, errorRatio: 0, share: 1 } });

      const jobType = (name: string) => p.jobTypes.find((j: { jobType: string }) => j.jobType === name);
      expect(jobType('linux64-opt')).to.deep.include({ label: 'job-type', known: true, rule: 'linux64-*', shares: { taskservice: 1 } });
      expect(jobType('linux64-opt').requests['5m'].byBackend.taskservice).to.include({ requests: 6, errors: 0 });
      expect(jobType('linux64-opt').requests['5m'].byBackend.taskservice.p50).to.be.a('number');
      expect(jobType('none')).to.deep.include({ label: 'none', known: false, rule: null, shares: { buildbot: 1 } });
      expect(jobType('android-api-16-test').requests.all).to.deep.equal({ requests: 0, errors: 0, errorRatio: null, byBackend: {} });
    });

    it('GET /history: config versions newest first, failures with file:line:column, successes with the job types that moved', async () => {
      await sendTraffic();
      t.writeConfig(yaml.replace('backend: buildbot\n    shadow', 'backend: nosuch\n    shadow'));
      await waitFor(async () => (await request(t.adminUrl).get('/history')).body.versions[0].result === 'failure' || undefined, 5000, 'the rejected reload');
      const moved = yaml.replace('  - jobType: win32-debug\n    backend: buildbot', '  - jobType: win32-debug\n    backend: taskservice');
      t.writeConfig(moved);
      await waitFor(async () => (await request(t.adminUrl).get('/history')).body.versions[0].hash === sha256(moved) || undefined, 5000, 'the good reload');

      const res = await request(t.adminUrl).get('/history').expect(200);
      // Found by hash: a save can be caught half-written by the watcher, which adds a rejected "empty file" version in between.
      const versions: ConfigVersion[] = res.body.versions;
      const good = versions[0]!;
      const bad = versions.find((v) => v.result === 'failure' && v.hash === sha256(yaml.replace('backend: buildbot\n    shadow', 'backend: nosuch\n    shadow')))!;
      const startup = versions.at(-1)!;
      expect(res.body.total).to.equal(versions.length).and.be.at.least(3);
      expect(startup).to.include({ trigger: 'startup', result: 'success', hash: sha256(yaml), error: null });
      expect(bad.error).to.match(new RegExp(`^${t.configFile.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:\\d+:\\d+: routes\\[2\\]\\.backend: unknown backend "nosuch"`));
      expect(good).to.include({ result: 'success', error: null });
      // win32-debug moves whole; it had 4 of the last hour's 12 requests.
      expect(good.moved).to.deep.equal([{ jobType: 'win32-debug', before: { buildbot: 1 }, after: { taskservice: 1 }, ruleBefore: 'win32-debug', ruleAfter: 'win32-debug', moved: 1, requests: 4 }]);
      expect(good.movedShareOfLastHour).to.equal(0.3333);

      expect((await request(t.adminUrl).get('/history?limit=1').expect(200)).body.versions).to.have.length(1);
      for (const limit of ['0', '101', 'abc', '1.5']) {
        const r = await request(t.adminUrl).get(`/history?limit=${limit}`).expect(400);
        expect(r.body).to.deep.include({ code: 'BAD_REQUEST', parameter: 'limit' });
      }
    });

    it('says which replica answered: a header on every answer, /healthz and the status page (the host name unless STRANGLER_REPLICA names it)', async () => {
      t = await startTestProxy(yaml);
      const health = await request(t.adminUrl).get('/healthz').expect(200);
      expect(health.body).to.deep.equal({ status: 'ok', replica: hostname() });
      expect(health.headers['x-strangler-replica']).to.equal(hostname());
      expect((await request(t.adminUrl).get('/routes').expect(200)).headers['x-strangler-replica']).to.equal(hostname());
      expect((await request(t.adminUrl).get('/nope').expect(404)).headers['x-strangler-replica']).to.equal(hostname());
      const page = (await request(t.adminUrl).get('/').expect(200)).text;
      expect(page).to.contain(`by replica <span data-field="replica">${hostname()}</span>`);
    });

    it('answers unknown paths 404 and wrong methods 405, in the one error shape', async () => {
      const missing = await request(t.adminUrl).get('/nope').expect(404);
      expect(missing.body).to.include({ code: 'NOT_FOUND' });
      expect(missing.body.endpoints).to.include('POST /reload');
      const wrong = await request(t.adminUrl).delete('/routes').expect(405).expect('allow', 'GET, HEAD');
      expect(wrong.body).to.include({ code: 'METHOD_NOT_ALLOWED' });
      expect(wrong.body.error).to.contain('DELETE is not allowed on /routes');
    });
  });

  describe('access control', () => {
    const TOKEN = `test-token-${randomBytes(16).toString('hex')}`;
    const WRONG = `wrong-token-${randomBytes(16).toString('hex')}`;

    it('without a token configured: POST endpoints answer 403 saying how to enable them; reads stay open', async () => {
      t = await startTestProxy(yaml);
      for (const endpoint of ['/reload', '/explain']) {
        const res = await request(t.adminUrl).post(endpoint).set('authorization', `Bearer ${TOKEN}`).send({ method: 'GET', path: '/' }).expect(403);
        expect(res.body.code).to.equal('ADMIN_DISABLED');
        expect(res.body.error).to.contain('STRANGLER_ADMIN_TOKEN');
        expect(res.body.error).to.contain('disabled');
      }
      await request(t.adminUrl).get('/routes').expect(200);
    });

    it('with a token: no header 401 naming the header expected, a wrong token 401, the right token 200', async () => {
      t = await startProxyWithAuth(yaml, { adminToken: TOKEN });
      const none = await request(t.adminUrl).post('/reload').expect(401).expect('www-authenticate', /^Bearer realm="strangler-admin"/);
      expect(none.body).to.include({ code: 'ADMIN_UNAUTHORIZED', header: 'Authorization: Bearer <token>' });
      expect(none.body.error).to.match(/^missing Authorization header: this endpoint needs "Authorization: Bearer <token>"/);
      const basic = await request(t.adminUrl).post('/reload').set('authorization', `Basic ${Buffer.from(`u:${TOKEN}`).toString('base64')}`).expect(401);
      expect(basic.body.error).to.match(/not "Bearer <token>"/);
      const wrong = await request(t.adminUrl).post('/reload').set('authorization', `Bearer ${WRONG}`).expect(401).expect('www-authenticate', /error="invalid_token"/);
      expect(wrong.body.error).to.match(/^wrong bearer token/);
      // A prefix of the token, and the token with a suffix, are wrong too.
      await request(t.adminUrl).post('/reload').set('authorization', `Bearer ${TOKEN.slice(0, -1)}`).expect(401);
      await request(t.adminUrl).post('/reload').set('authorization', `Bearer ${TOKEN}x`).expect(401);

      const ok = await request(t.adminUrl).post('/reload').set('authorization', `Bearer ${TOKEN}`).expect(200);
      expect(ok.body).to.include({ result: 'success', trigger: 'admin', hash: sha256(yaml), previousHash: sha256(yaml), routes: 3 });
      // The scheme is case-insensitive (RFC 6750).
      await request(t.adminUrl).post('/reload').set('authorization', `bearer ${TOKEN}`).expect(200);
      // Reads stay open unless protected.
      await request(t.adminUrl).get('/routes').expect(200);
    });

    it('POST /reload answers the result: the moved job types, or the error with file:line:column (422) while the old routes stay', async () => {
      t = await startProxyWithAuth(yaml, { adminToken: TOKEN });
      await request(t.url).get('/api/v2/builders/win32-debug').expect(200);
      // Saved and reloaded by POST alone (the watcher may get there first; either way the POST re-reads the file).
      const moved = yaml.replace('  - jobType: win32-debug\n    backend: buildbot', '  - jobType: win32-debug\n    backend: taskservice');
      t.writeConfig(moved);
      const ok = await request(t.adminUrl).post('/reload').set('authorization', `Bearer ${TOKEN}`).expect(200);
      expect(ok.body).to.include({ result: 'success', hash: sha256(moved) });

      const broken = `${moved}  - jobType: /[/\n    backend: buildbot\n`;
      t.writeConfig(broken);
      const bad = await request(t.adminUrl).post('/reload').set('authorization', `Bearer ${TOKEN}`).expect(422);
      expect(bad.body).to.include({ code: 'CONFIG_INVALID', result: 'failure', trigger: 'admin', hash: sha256(broken) });
      expect(bad.body.error).to.match(new RegExp(`^${t.configFile.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:\\d+:\\d+: routes\\[3\\]\\.jobType: bad regular expression`));
      expect(bad.body.problems[0]).to.include({ field: 'routes[3].jobType' });
      expect(bad.body.inForce.hash).to.equal(sha256(moved));
      await request(t.url).get('/api/v2/builders/win32-debug').expect('x-strangler-backend', 'taskservice');
    });

    it('POST /explain takes headers and a body (a force), with the token; bad JSON is 400, other types 415', async () => {
      t = await startProxyWithAuth(yaml, { adminToken: TOKEN });
      const force = JSON.stringify({ jsonrpc: '2.0', method: 'force', id: 1, params: { builderNames: ['linux64-opt'] } });
      await request(t.adminUrl).post('/explain').send({ method: 'POST', path: '/api/v2/forceschedulers/force', body: force }).expect(401);
      const res = await request(t.adminUrl)
        .post('/explain')
        .set('authorization', `Bearer ${TOKEN}`)
        .send({ method: 'POST', path: '/api/v2/forceschedulers/force', headers: { 'Content-Type': 'application/json' }, body: force })
        .expect(200);
      expect(res.body).to.include({ backend: 'taskservice', source: 'body', jobType: 'linux64-opt' });
      const sticky = await request(t.adminUrl)
        .post('/explain')
        .set('authorization', `Bearer ${TOKEN}`)
        .send({ method: 'GET', path: '/api/v2/builders/android-api-16-test', headers: { 'X-Push-Id': 'p-1' } })
        .expect(200);
      expect(sticky.body.sticky).to.include({ source: 'header:X-Push-Id', key: 'p-1' });

      const auth = { authorization: `Bearer ${TOKEN}` };
      const notJson = await request(t.adminUrl).post('/explain').set(auth).set('content-type', 'application/json').send('{"method": ').expect(400);
      expect(notJson.body.code).to.equal('BAD_REQUEST');
      expect(notJson.body.error).to.contain('not valid JSON');
      await request(t.adminUrl).post('/explain').set(auth).set('content-type', 'text/plain').send('GET /').expect(415);
      const wrongType = await request(t.adminUrl).post('/explain').set(auth).send({ method: 'GET', path: '/x', body: 5 }).expect(400);
      expect(wrongType.body.error).to.contain('"body" must be a string');
      await request(t.adminUrl).post('/explain').set(auth).send([1, 2]).expect(400);
      await request(t.adminUrl).post('/explain').set(auth).send({ method: 'GET', path: '/x', extra: 1 }).expect(400);
      await request(t.adminUrl).post('/explain').set(auth).send({ method: 'GET', path: '/x', headers: { 'bad header': 'v' } }).expect(400);
    });

    it('protected reads: every read endpoint and the page need the token; /metrics, /healthz and /readyz stay open', async () => {
      t = await startProxyWithAuth(yaml, { adminToken: TOKEN, protectAdminReads: true });
      for (const endpoint of ['/routes', '/backends', '/history', '/progress', '/explain?method=GET&path=/']) {
        const res = await request(t.adminUrl).get(endpoint).expect(401).expect('www-authenticate', /^Bearer/);
        expect(res.body.code, endpoint).to.equal('ADMIN_UNAUTHORIZED');
        await request(t.adminUrl).get(endpoint).set('authorization', `Bearer ${WRONG}`).expect(401);
        await request(t.adminUrl).get(endpoint).set('authorization', `Bearer ${TOKEN}`).expect(200);
      }
      const page = await request(t.adminUrl).get('/').expect(401).expect('content-type', /html/);
      expect(page.text).to.contain('id="token-form"');
      expect(page.text).not.to.contain('id="routes-table"');
      const shown = await request(t.adminUrl).get('/').set('authorization', `Bearer ${TOKEN}`).expect(200);
      expect(shown.text).to.contain('id="routes-table"');
      await request(t.adminUrl).get('/metrics').expect(200);
      await request(t.adminUrl).get('/healthz').expect(200);
      await request(t.adminUrl).get('/readyz').expect(200);
    });

    it('never puts the token (configured or offered) in an answer or a log line', async () => {
      t = await startProxyWithAuth(yaml, { adminToken: TOKEN, protectAdminReads: true });
      await request(t.url).get('/api/v2/builders/linux64-opt').expect(200);
      const seen: string[] = [];
      const record = (res: request.Response) => seen.push(JSON.stringify(res.headers), res.text ?? '');
      for (const auth of [undefined, `Bearer ${WRONG}`, `Bearer ${TOKEN}`, `Basic ${TOKEN}`, TOKEN]) {
        for (const endpoint of ['/', '/routes', '/backends', '/history', '/progress', '/explain?method=GET&path=/', '/metrics', '/nope']) {
          const req = request(t.adminUrl).get(endpoint);
          record(await (auth ? req.set('authorization', auth) : req));
        }
        for (const endpoint of ['/reload', '/explain']) {
          const req = request(t.adminUrl).post(endpoint).send({ method: 'GET', path: '/' });
          record(await (auth ? req.set('authorization', auth) : req));
        }
      }
      // A failed reload's message and a request carrying the token to the proxy port must not leak it either.
      t.writeConfig(`${yaml}  - jobType: /[/\n    backend: buildbot\n`);
      record(await request(t.adminUrl).post('/reload').set('authorization', `Bearer ${TOKEN}`));
      expect(seen.length).to.be.greaterThan(50);
      const statuses = seen.join('\n');
      expect(statuses).to.contain('ADMIN_UNAUTHORIZED'); // the answers above are real ones
      for (const secret of [TOKEN, WRONG]) {
        expect(statuses.includes(secret), 'a response carries a token').to.equal(false);
        expect(JSON.stringify(t.logs()).includes(secret), 'a log line carries a token').to.equal(false);
      }
      expect(t.logs().length).to.be.greaterThan(0);
    });
  });
});
