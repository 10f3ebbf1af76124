import { expect } from 'chai';
import { esc, renderLockedPage, renderStatusPage, statusPageCsp, type PageModel } from '../../../src/admin/page.js';
import { backendsView, buildsView, progressView, routesView } from '../../../src/admin/views.js';
import type { TrafficRow } from '../../../src/metrics/traffic.js';
import { compareBuilds } from '../../../src/tracking/compare.js';
import type { BuildOutcome } from '../../../src/tracking/outcome.js';
import { tableFrom, TWO_BACKENDS } from '../../support/tables.js';

const HOSTILE_RULE = '<script>alert(1)</script>';
const HOSTILE_JOB = '"><svg onload=alert(2)>';
const HOSTILE_ERROR = 'routes.yaml:3:1: routes[0].backend: unknown backend "<img src=x onerror=alert(3)>"';

/** A build of the hostile job type on each side, so the builds section shows its name in text, attributes, links and chart titles. */
function hostileBuilds(now: Date): BuildOutcome[] {
  const t = now.getTime() - 60_000;
  return ['buildbot', 'taskservice'].map((backend, i) => ({ backend, buildKey: `k${i}`, jobType: HOSTILE_JOB, result: 0, submittedAt: t - 20_000, startedAt: t - 10_000, finishedAt: t, origin: 'proxy', recordedAt: t }));
}

function model(): PageModel {
  const table = tableFrom(`${TWO_BACKENDS}routes:\n  - jobType: ${JSON.stringify(HOSTILE_RULE)}\n    backend: taskservice\n  - jobType: linux64-*\n    split: { taskservice: 1, buildbot: 1 }\n`);
  const rows: TrafficRow[] = [
    { jobType: HOSTILE_JOB, rule: '(default)', backend: 'buildbot', requests: 3, errors: 1, p50: 0.005, p95: 0.25, p99: 1 },
    { jobType: 'linux64-opt', rule: 'linux64-*', backend: 'taskservice', requests: 2, errors: 0, p50: 0.01, p95: 0.01, p99: 0.01 },
  ];
  const now = new Date('2030-01-01T00:00:10Z');
  return {
    routes: routesView(table),
    progress: progressView(table, [HOSTILE_JOB, 'linux64-opt'], { '5m': rows, '1h': rows, all: rows }, new Date('2030-01-01T00:00:00Z'), now),
    backends: backendsView(
      [{ name: 'buildbot', url: 'http://127.0.0.1:8011', legacy: true, isDefault: true, up: false, lastProbeAt: '2030-01-01T00:00:05Z', lastProbeError: '"><b>probe</b>', circuit: 'open', inFlight: 1 }],
      rows,
    ),
    history: [
      { at: '2030-01-01T00:00:09Z', trigger: 'file-change', result: 'failure', hash: 'f'.repeat(64), error: HOSTILE_ERROR, moved: [], movedShareOfLastHour: 0 },
      {
        at: '2030-01-01T00:00:08Z',
        trigger: 'admin',
        result: 'success',
        hash: 'a'.repeat(64),
        error: null,
        moved: [{ jobType: HOSTILE_JOB, before: { buildbot: 1 }, after: { taskservice: 1 }, ruleBefore: null, ruleAfter: HOSTILE_RULE, moved: 1, requests: 3 }],
        movedShareOfLastHour: 0.6,
      },
    ],
    queues: { store: null, jobType: null, limit: 10, backends: [] },
    builds: { window: '24h', view: buildsView(compareBuilds(hostileBuilds(now), { legacy: 'buildbot', since: now.getTime() - 86_400_000, until: now.getTime() }), { window: '24h', jobType: null }) },
    jobType: null,
    now,
    postsEnabled: false,
    refreshMs: 2000,
    replica: { name: 'replica-under-test', store: null },
  };
}

describe('admin/page', () => {
  it('esc escapes the five HTML-special characters', () => {
    expect(esc(`<a href="x" title='y'>&</a>`)).to.equal('&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;');
    expect(esc(null)).to.equal('');
    expect(esc(0.5)).to.equal('0.5');
  });

  it('escapes every untrusted value: rule patterns, job types, error messages, probe errors', () => {
    const html = renderStatusPage(model(), 'NONCE123');
    expect(html.match(/<script/g)).to.have.length(1); // the page's own, nonce'd
    expect(html).to.contain('<script nonce="NONCE123">');
    for (const raw of ['<svg onload', '<img', '<b>probe', 'alert(1)</script>']) expect(html, raw).not.to.contain(raw);
    // The only SVG is the page's own: two charts of the one job type with builds, and the legend's two swatches.
    expect(html.match(/<svg/g)).to.have.length(4);
    expect(html).to.contain(`<tbody data-job-type="${esc(HOSTILE_JOB)}"`);
    expect(html).to.contain(`href="?${esc(new URLSearchParams({ jobType: HOSTILE_JOB }).toString())}"`);
    expect(html).to.contain(esc(HOSTILE_RULE));
    expect(html).to.contain(esc(HOSTILE_ERROR));
    expect(html).to.contain(`data-job-type="${esc(HOSTILE_JOB)}"`);
    expect(html).to.contain(`data-moved-job-type="${esc(HOSTILE_JOB)}"`);
    // No attribute value is broken out of: every quote inside values is an entity.
    expect(html).not.to.match(/data-[a-z-]+="[^"]*"[^\s>/]/);
  });

  it('carries the figures as stable ids and data attributes', () => {
    const html = renderStatusPage(model(), 'n');
    // Known: the hostile name (no rule matches it: default, buildbot) and linux64-opt (half on the service): 0.5 of 2.
    expect(html).to.match(/id="progress-bar"[^>]*data-share="0.25"[^>]*data-count="0.5" data-total="2"/);
    expect(html).to.match(/id="traffic-bar"[^>]*data-share="0.4" data-requests="2" data-total="5"/);
    expect(html).to.contain(`id="config-hash" data-hash="${model().routes.hash}"`);
    for (const id of ['routes-table', 'jobtypes-table', 'backends-table', 'history', 'refresh-status', 'loaded-at']) expect(html).to.contain(`id="${id}"`);
    expect(html).to.contain('data-targets="taskservice=0.5,buildbot=0.5"');
    expect(html).to.match(/<li data-result="failure"[^>]*>[\s\S]*?<pre class="error">/);
    expect(html).to.contain('<noscript><meta http-equiv="refresh"');
    expect(html).to.match(/data-backend="buildbot" data-up="false" data-circuit="open"/);
  });

  it('a locked page offers a token field that cannot submit the token anywhere', () => {
    const html = renderLockedPage('missing Authorization header', 2000, 'n');
    expect(html).to.contain('id="token-form"');
    expect(html).to.match(/<input id="token-input" type="password"/);
    expect(html).not.to.match(/<input[^>]*name=/); // an unnamed field is never part of a form submission
  });

  it('the CSP allows the nonce\'d script only, nothing from other hosts, no framing, no form posts', () => {
    const csp = statusPageCsp('abc');
    expect(csp).to.contain("default-src 'none'");
    expect(csp).to.contain("script-src 'nonce-abc'");
    expect(csp).not.to.match(/script-src[^;]*unsafe-inline/);
    expect(csp).to.contain("connect-src 'self'");
    expect(csp).to.contain("frame-ancestors 'none'");
    expect(csp).to.contain("form-action 'none'");
  });
});
