/**
 * GET /builds and the status page's "Builds: new vs legacy" section, reading
 * finished builds from a real embedded store in a temporary folder (written
 * with the store's recordOutcome), with the clock fixed.
 */
import { expect } from 'chai';
import request from 'supertest';
import { createAdminApp, type AdminDeps } from '../../../src/admin/app.js';
import { esc } from '../../../src/admin/html.js';
import type { BuildsView } from '../../../src/admin/views.js';
import type { Store } from '../../../src/store/store.js';
import { adminDeps, openTempStore, withClosedStore } from '../../support/admin.js';
import { buildsOf, recordAll, results, scenario } from '../../support/outcomes.js';
import { legacyAndQueueYaml, tableFrom } from '../../support/tables.js';

const NOW = Date.parse('2030-01-02T12:00:00Z');
const HOUR = 3_600_000;
const TOKEN = 'builds-test-token-0123456789';
const HOSTILE = '"><svg onload=alert(1)>';
const TABLE = tableFrom(legacyAndQueueYaml({ legacyUrl: 'http://127.0.0.1:8011', rootUrl: 'http://127.0.0.1:8013', task: '{ taskQueueId: proj-ci/linux, payload: { command: [echo] } }' }));

const depsWith = (store: Pick<Store, 'outcomes'> | undefined, overrides: Partial<AdminDeps> = {}): AdminDeps => adminDeps(TABLE, { builds: { outcomes: () => store, now: () => NOW }, ...overrides });

describe('admin: builds', () => {
  let temp: Awaited<ReturnType<typeof openTempStore>>;
  let store: Store;

  before(async () => {
    temp = await openTempStore();
    store = temp.store;
    await recordAll(store, [
      ...scenario(NOW),
      // Finished 25 hours ago: outside the default window, inside 7d.
      ...buildsOf({ backend: 'queue', jobType: 'linux64-opt', results: results(0, 5), seconds: 10, lastAt: NOW - 25 * HOUR }),
      // A job type named by a client, with markup in it.
      ...buildsOf({ backend: 'queue', jobType: HOSTILE, results: results(1, 0), seconds: 5, lastAt: NOW - HOUR }),
    ]);
  });
  after(async () => {
    await temp?.close();
  });

  describe('GET /builds', () => {
    it('answers the comparison over the last 24 hours: per job type both sides, the differences and a verdict', async () => {
      const res = await request(createAdminApp(depsWith(store))).get('/builds').expect(200).expect('content-type', /json/).expect('cache-control', 'no-store');
      const view = res.body as BuildsView;
      expect(view.window).to.deep.equal({ name: '24h', since: '2030-01-01T12:00:00.000Z', until: '2030-01-02T12:00:00.000Z', seconds: 86_400, buckets: 24, bucketSeconds: 3600 });
      expect(view).to.deep.include({ legacy: 'buildbot', jobType: null, rules: { minBuilds: 10, passRateMarginPoints: 5, durationMargin: 0.2 } });
      expect(view.jobTypes.map((j) => [j.jobType, j.verdicts.map((v) => `${v.backend}=${v.verdict}`).join()])).to.deep.equal([
        [HOSTILE, 'queue=not-enough-builds'],
        ['android-api-16-test', 'queue=not-enough-builds'],
        ['linux64-debug', 'queue=better'],
        ['linux64-opt', 'queue=worse'],
        ['win32-debug', ''],
      ]);
      expect(view.summary).to.deep.equal({ worse: 1, 'not-enough-builds': 2, 'as-good': 0, better: 1 });

      const opt = view.jobTypes.find((j) => j.jobType === 'linux64-opt')!;
      const [legacy, queue] = opt.sides;
      expect(legacy).to.deep.include({ backend: 'buildbot', side: 'legacy', builds: 20, counted: 20, passed: 18, passRate: 0.9, infrastructureExceptions: 0, durationP50: 100, durationP95: 100, waitP95: 20 });
      // The five failures of 25 hours ago are outside the window.
      expect(queue).to.deep.include({ backend: 'queue', side: 'new', builds: 14, counted: 12, passed: 8, infrastructureExceptions: 2, durationP50: 130, waitP95: 40 });
      expect(queue!.results).to.deep.equal({ success: 8, warnings: 0, failure: 4, skipped: 0, exception: 0, retry: 2, cancelled: 0 });
      const verdict = opt.verdicts[0]!;
      expect(verdict.differences).to.deep.equal({ passRatePoints: -23.333333333, durationP50Change: 0.3, durationP50Seconds: 30, durationP95Seconds: 30, waitP95Seconds: 20, infrastructureExceptions: 2 });
      expect(verdict.reasons).to.deep.equal([
        'pass rate 66.7 % on queue against 90 % on buildbot: 23.3 points lower (more than 5)',
        'duration p50 2 min 10 s against 1 min 40 s: 30 % longer (more than 20 %)',
      ]);
      // The series: the queue's newest build of linux64-opt finished 15 minutes ago, in the last slice.
      expect(queue!.series).to.have.length(24);
      expect(queue!.series.reduce((n, p) => n + p.builds, 0)).to.equal(14);
      expect(queue!.series[23]).to.deep.include({ start: '2030-01-02T11:00:00.000Z', end: '2030-01-02T12:00:00.000Z', builds: 2, counted: 2, passRate: 0, durationP50: 130 });
    });

    it('takes another window, a job type and a minimum number of builds', async () => {
      const app = createAdminApp(depsWith(store));
      const week = (await request(app).get('/builds?window=7d&jobType=linux64-opt').expect(200)).body as BuildsView;
      expect(week.jobType).to.equal('linux64-opt');
      expect(week.window).to.deep.include({ name: '7d', seconds: 604_800, bucketSeconds: 25_200 });
      expect(week.jobTypes.map((j) => j.jobType)).to.deep.equal(['linux64-opt']);
      expect(week.jobTypes[0]!.sides[1]).to.deep.include({ builds: 19, counted: 17, passed: 8 });

      // The last hour: the builds that finished 10 and 40 minutes ago on each side.
      const hour = (await request(app).get('/builds?window=1h&jobType=linux64-debug').expect(200)).body as BuildsView;
      expect(hour.jobTypes[0]!.sides.map((s) => [s.backend, s.builds])).to.deep.equal([
        ['buildbot', 2],
        ['queue', 2],
      ]);
      expect(hour.jobTypes[0]!.verdicts[0]!.verdict).to.equal('not-enough-builds');
      const lenient = (await request(app).get('/builds?window=1h&jobType=linux64-debug&minBuilds=2').expect(200)).body as BuildsView;
      expect(lenient.rules.minBuilds).to.equal(2);
      expect(lenient.jobTypes[0]!.verdicts[0]!.verdict).to.equal('better');

      const none = (await request(app).get('/builds?jobType=nosuch').expect(200)).body as BuildsView;
      expect(none.jobTypes).to.deep.equal([]);
      expect(none.summary).to.deep.equal({ worse: 0, 'not-enough-builds': 0, 'as-good': 0, better: 0 });
    });

    for (const [query, parameter, says] of [
      ['window=2x', 'window', 'e.g. 1h, 24h or 7d'],
      ['window=0h', 'window', 'e.g. 1h, 24h or 7d'],
      ['window=91d', 'window', 'at most 90d'],
      ['window=1h&window=2h', 'window', 'once'],
      ['minBuilds=0', 'minBuilds', 'an integer from 1'],
      ['minBuilds=ten', 'minBuilds', 'an integer from 1'],
      ['jobType=a%07b', 'jobType', 'no control characters'],
      ['since=1', 'since', 'unknown query parameter'],
    ] as const) {
      it(`answers 400 to ?${query}, saying what was expected`, async () => {
        const res = await request(createAdminApp(depsWith(store))).get(`/builds?${query}`).expect(400);
        expect(res.body).to.include({ code: 'BAD_REQUEST', parameter });
        expect(res.body.error).to.contain(says);
      });
    }

    it('says build tracking is off, and why, while no store is open', async () => {
      for (const deps of [depsWith(undefined), depsWith(store, { builds: undefined })]) {
        const res = await request(createAdminApp(deps)).get('/builds').expect(503);
        expect(res.body).to.include({ code: 'BUILD_TRACKING_OFF', tracking: false });
        expect(res.body.error).to.match(/^build tracking is off: no store is open/);
        for (const why of ['Taskcluster queue', '`track: true`', '--store', 'STRANGLER_STORE', '--data-dir']) expect(res.body.error).to.contain(why);
      }
      // A bad window is still the caller's mistake first.
      await request(createAdminApp(depsWith(undefined))).get('/builds?window=x').expect(400);
    });

    it('answers 503 STORE_UNAVAILABLE naming the failure when the store cannot be read, and counts it', async () => {
      await withClosedStore(async (closed) => {
        const deps = depsWith(closed);
        const res = await request(createAdminApp(deps)).get('/builds').expect(503);
        expect(res.body.code).to.equal('STORE_UNAVAILABLE');
        expect(res.body.error).to.match(/^finished builds could not be read from the store: /);
        expect(await deps.metrics.registry.getSingleMetricAsString('strangler_store_errors_total')).to.contain('operation="admin"} 1');
      });
    });

    it('needs the token when reads are protected, and allows GET only', async () => {
      const app = createAdminApp(depsWith(store, { auth: { token: TOKEN, protectReads: true } }));
      expect((await request(app).get('/builds').expect(401)).body.code).to.equal('ADMIN_UNAUTHORIZED');
      await request(app).get('/builds').set('authorization', `Bearer ${TOKEN}`).expect(200);
      const open = createAdminApp(depsWith(store));
      const res = await request(open).post('/builds').expect(405);
      expect(res.headers.allow).to.equal('GET, HEAD');
      expect((await request(open).get('/nosuch').expect(404)).body.endpoints).to.include('GET /builds');
    });
  });

  describe('the status page section', () => {
    it('shows per job type both sides, the differences, the verdict in words and the charts with their values', async () => {
      const html = (await request(createAdminApp(depsWith(store))).get('/').expect(200)).text;
      expect(html).to.match(/<section id="builds"[^>]*data-tracking="on" data-window="24h" data-min-builds="10"/);
      const body = (jobType: string) => {
        const start = html.indexOf(`<tbody data-job-type="${esc(jobType)}"`);
        expect(start, jobType).to.be.above(-1);
        return html.slice(start, html.indexOf('</tbody>', start));
      };
      const opt = body('linux64-opt');
      expect(opt).to.contain('data-verdicts="queue=worse"');
      expect(opt).to.match(/<tr data-backend="buildbot" data-side="legacy">[\s\S]*?data-col="passRate" data-value="0.9" data-passed="18">90 %/);
      expect(opt).to.match(/<tr data-backend="queue" data-side="new">[\s\S]*?data-col="builds" data-value="14" data-counted="12"/);
      expect(opt).to.contain('<small class="diff" data-diff="passRatePoints" data-value="-23.333333333">−23.3 pts</small>');
      expect(opt).to.contain('<small class="diff" data-diff="durationP50Change" data-value="0.3">+30 %</small>');
      expect(opt).to.contain('data-col="durationP50" data-value="130">2 min 10 s');
      expect(opt).to.match(/data-verdict="worse"><span class="verdict bad">worse — move back<\/span>/);
      expect(opt).to.contain('<li>pass rate 66.7 % on queue against 90 % on buildbot: 23.3 points lower (more than 5)</li>');
      expect(body('linux64-debug')).to.match(/data-verdict="better"><span class="verdict good">better — ready to move/);
      expect(body('android-api-16-test')).to.match(/data-verdict="not-enough-builds"><span class="verdict unknown">not enough builds yet/);
      expect(body('win32-debug')).to.contain('only on buildbot in this window');
      expect(html).to.contain('<span data-summary="better as-good" data-count="1">ready to move: <b>1</b></span>');
      expect(html).to.contain('<span data-summary="worse" data-count="1">move back: <b>1</b></span>');

      // Charts: the queue's last slice of linux64-opt, 2 builds both failing in 130 s.
      expect(opt).to.match(
        /<circle class="pt s1"[^>]*data-backend="queue" data-side="new" data-bucket="23" data-value="0" data-builds="2"><title>queue \(new\), 2030-01-02 11:00–12:00 UTC: pass rate 0 % of 2 counted builds<\/title><\/circle>/,
      );
      expect(opt).to.match(/data-chart="durationP50"[\s\S]*data-backend="queue" data-side="new" data-bucket="23" data-value="130"[^>]*><title>queue \(new\), 2030-01-02 11:00–12:00 UTC: duration p50 2 min 10 s of 2 counted builds/);

      // The hostile job type is text everywhere, never markup.
      expect(html).not.to.contain(HOSTILE);
      expect(body(HOSTILE)).to.contain(`<code>${esc(HOSTILE)}</code>`);
    });

    it('links the windows, keeping the job type; the job type links keep the window; a bad window shows the default', async () => {
      const app = createAdminApp(depsWith(store));
      const week = (await request(app).get('/?window=7d&jobType=linux64-opt').expect(200)).text;
      expect(week).to.match(/<section id="builds"[^>]*data-window="7d"/);
      expect(week).to.contain('<a href="?jobType=linux64-opt&amp;window=1h" data-window="1h">1h</a>');
      expect(week).to.contain('<a href="?jobType=linux64-opt" data-window="24h">24h</a>');
      expect(week).to.contain('<b aria-current="page" data-window="7d">7d</b>');
      expect(week).to.contain('<a href="?window=7d">all job types</a>');
      expect(week.match(/<tbody data-job-type=/g)).to.have.length(1);
      expect(week).to.contain('data-counted="17"');

      const day = (await request(app).get('/').expect(200)).text;
      expect(day).to.contain('<a href="?jobType=linux64-opt"><code>linux64-opt</code></a>');
      expect(day).to.contain('<a href="?window=7d" data-window="7d">7d</a>');

      const bad = (await request(app).get('/?window=%3Cb%3E').expect(200)).text;
      expect(bad).to.match(/<section id="builds"[^>]*data-window="24h"/);
      expect(bad).not.to.contain('&lt;b&gt;');
    });

    it('says when build tracking is off, or the store fails, and the rest of the page stands', async () => {
      const off = (await request(createAdminApp(depsWith(undefined))).get('/').expect(200)).text;
      expect(off).to.match(/<section id="builds"[^>]*data-tracking="off"/);
      expect(off).to.match(/<p data-col="tracking-off">build tracking is off: no store is open/);
      expect(off).to.contain('id="routes-table"');

      await withClosedStore(async (closed) => {
        const failed = (await request(createAdminApp(depsWith(closed))).get('/').expect(200)).text;
        expect(failed).to.match(/<section id="builds"[^>]*data-tracking="error"[\s\S]*?<pre class="error" data-col="store-error">finished builds could not be read from the store: /);
        expect(failed).to.contain('id="routes-table"');
      });
    });
  });
});
