/**
 * The status page at the admin port's `/`: one server-rendered HTML document,
 * readable as plain tables without JavaScript, with a small inline script
 * that re-fetches `/` every few seconds and swaps in the new `#content`.
 * No build step, nothing fetched from other hosts: CSS and script are inline.
 *
 * SECURITY: job types, rule patterns, URLs and error messages come from
 * routes.yaml and from client requests; every value goes through `esc()`
 * before it reaches the HTML, in text and in attributes alike. The script
 * runs under a per-response CSP nonce, so injected markup could not run
 * script even if a value escaped.
 */
import type { ConfigVersion } from '../config/history.js';
import { BUILDS_STYLE, buildsSection, pageHref, type BuildsSection } from './build-section.js';
import { esc } from './html.js';
import type { TrafficWindow } from '../metrics/traffic.js';
import type { BackendView, LatencyCounts, ProgressJobType, ProgressView, QueueBackendView, QueuesView, RoutesView, RouteView } from './views.js';

export interface PageModel {
  routes: RoutesView;
  progress: ProgressView;
  backends: BackendView[];
  history: readonly ConfigVersion[];
  /** The queues and their recent tasks, or why the store could not be read. */
  queues: QueuesView | { error: string };
  /** The build comparison over the page's window (?window=), or why there is none. */
  builds: BuildsSection;
  /** The job type the page is filtered to (?jobType=), or null. */
  jobType: string | null;
  now: Date;
  /** Whether POST endpoints are enabled (a token is configured); shown, never the token. */
  postsEnabled: boolean;
  /** Which replica rendered the page, and the store every replica shares (or this one's embedded file). */
  replica: { name: string; store: string | null };
  refreshMs: number;
}

export { esc };

/** How many job-type rows the page shows; the JSON API has them all. */
export const MAX_JOB_TYPE_ROWS = 200;
const HISTORY_ROWS = 10;


const pct = (share: number | null | undefined, digits = 0): string => (share === null || share === undefined ? '–' : `${(share * 100).toFixed(digits)}%`);
const num = (n: number): string => (Number.isInteger(n) ? String(n) : n.toFixed(2).replace(/\.?0+$/, ''));

function seconds(s: number | null): string {
  if (s === null) return '–';
  return s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(s < 10 ? 1 : 0)} s`;
}

function ago(iso: string | null, now: Date): string {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((now.getTime() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

function time(iso: string | null): string {
  return iso ? `<time datetime="${esc(iso)}">${esc(iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z'))}</time>` : '–';
}

/** Legacy first, then the others in file order: the old and the new side by side. */
function columnOrder(routes: RoutesView): string[] {
  const legacy = routes.backends.filter((b) => b.legacy).map((b) => b.name);
  return [...legacy, ...routes.backends.filter((b) => !b.legacy).map((b) => b.name)];
}

/** A stacked bar of backend shares (0 to 1), with a stable colour per backend. */
function splitBar(shares: Array<{ backend: string; share: number }>, legacy: string, attrs = '', cls = 'bar'): string {
  const segs = shares
    .filter((s) => s.share > 0)
    .map((s) => `<span class="seg ${s.backend === legacy ? 'old' : 'new'}" data-backend="${esc(s.backend)}" style="width:${(s.share * 100).toFixed(2)}%" title="${esc(s.backend)} ${pct(s.share, 1)}"></span>`)
    .join('');
  return `<div class="${cls}"${attrs}>${segs}</div>`;
}

function progressSection(m: PageModel): string {
  const p = m.progress;
  const s = p.summary;
  const newNames = p.newBackends.length ? p.newBackends.join(', ') : 'none';
  const jobSegs = p.backends.filter((b) => !b.legacy).map((b) => ({ backend: b.name, share: b.jobTypes.share }));
  const reqSegs = (w: TrafficWindow) => p.backends.filter((b) => !b.legacy).map((b) => ({ backend: b.name, share: b.requests[w].share }));
  const req = (w: TrafficWindow) => s.requests[w];
  return `<section id="progress" aria-labelledby="progress-title">
  <h2 id="progress-title">Migration to the new service <small>(${esc(newNames)})</small></h2>
  <div class="progress-row">
    <div class="label">Job types on the new service</div>
    ${splitBar(jobSegs, p.legacy, ` id="progress-bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="${Math.round(s.jobTypeShare * 100)}" data-share="${s.jobTypeShare}" data-count="${s.jobTypesOnNew}" data-total="${s.knownJobTypes}"`)}
    <div class="figure" id="progress-figure"><b>${pct(s.jobTypeShare, 1)}</b> — ${esc(num(s.jobTypesOnNew))} of ${s.knownJobTypes} known job types${s.knownJobTypes === 0 ? ' (none known yet: they come from routes, traffic and the legacy master)' : ''}</div>
  </div>
  <div class="progress-row">
    <div class="label">Requests on the new service (last 5 min)</div>
    ${splitBar(reqSegs('5m'), p.legacy, ` id="traffic-bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="${Math.round(req('5m').share * 100)}" data-share="${req('5m').share}" data-requests="${req('5m').onNew}" data-total="${req('5m').total}"`)}
    <div class="figure" id="traffic-figure"><b>${pct(req('5m').share, 1)}</b> — ${req('5m').onNew} of ${req('5m').total} requests; since start ${pct(req('all').share, 1)} (${req('all').onNew} of ${req('all').total})</div>
  </div>
</section>`;
}

function splitText(r: RouteView, legacy: string): string {
  if (!r.split) return `<span class="backend ${r.targets[0]!.backend === legacy ? 'old' : 'new'}">${esc(r.targets[0]!.backend)}</span>`;
  const text = r.targets.map((t) => `<span class="backend ${t.backend === legacy ? 'old' : 'new'}">${esc(t.backend)}</span> ${pct(t.share)}`).join(' · ');
  return `${text}${splitBar(
    r.targets.map((t) => ({ backend: t.backend, share: t.share })),
    legacy,
    '',
    'bar mini',
  )}`;
}

function routesSection(m: PageModel): string {
  const legacy = m.routes.legacy;
  const cols = columnOrder(m.routes);
  const traffic = new Map(m.progress.routes.map((r) => [r.rule, r]));
  const trafficCell = (rule: string) => {
    const t = traffic.get(rule)?.requests['5m'];
    if (!t || t.total === 0) return '<td class="num" data-col="requests">–</td>';
    const parts = cols.filter((b) => t.byBackend[b]).map((b) => `${esc(b)} ${t.byBackend[b]!.requests}`);
    const errors = Object.values(t.byBackend).reduce((sum, c) => sum + c.errors, 0);
    return `<td class="num" data-col="requests" data-total="${t.total}">${t.total}${errors ? ` <span class="bad">${errors} err</span>` : ''}<br><small>${parts.join('<br>')}</small></td>`;
  };
  const options = (r: RouteView): string => {
    const parts = [
      r.stickyBy.length ? `<span data-col="sticky">sticky by ${esc(r.stickyBy.join(', '))}</span>` : '',
      r.shadow ? `<span data-col="shadow">shadow to ${esc(r.shadow.backend)} ${r.shadow.percent}%${r.shadow.mutating ? ' (mutating too)' : ''}</span>` : '',
      r.fallback ? `<span data-col="fallback">fallback ${esc(r.fallback)}</span>` : '',
      r.retries ? `<span data-col="retries">${r.retries} ${r.retries === 1 ? 'retry' : 'retries'}</span>` : '',
    ].filter(Boolean);
    return parts.length ? parts.join('<br>') : '–';
  };
  const rows = m.routes.routes.map(
    (r) => `<tr data-rule="${esc(r.jobType)}" data-index="${r.index}"${r.overriddenBy !== null ? ' class="overridden"' : ''}>
      <td class="num">${r.index}</td>
      <td data-col="jobType" data-kind="${esc(r.kind)}"><code class="pattern">${esc(r.jobType)}</code> <small>${esc(r.kind)}</small>${r.overriddenBy !== null ? `<br><small>never applies: routes[${r.overriddenBy}] matches first</small>` : ''}</td>
      <td data-col="split" data-targets="${esc(r.targets.map((t) => `${t.backend}=${t.share}`).join(','))}">${splitText(r, legacy)}</td>
      <td data-col="options"><small>${options(r)}</small></td>
      <td class="num" data-col="jobTypes">${num(traffic.get(r.jobType)?.jobTypes.count ?? 0)}</td>
      ${trafficCell(r.jobType)}
    </tr>`,
  );
  const defaultRow = `<tr data-rule="(default)" class="default-row">
      <td class="num">–</td><td data-col="jobType"><i>anything else</i> <small>default</small></td>
      <td data-col="split" data-targets="${esc(m.routes.default)}=1"><span class="backend ${m.routes.default === legacy ? 'old' : 'new'}">${esc(m.routes.default)}</span></td>
      <td data-col="options"><small>job types no rule matches, requests naming none</small></td>
      <td class="num" data-col="jobTypes">${num(traffic.get('(default)')?.jobTypes.count ?? 0)}</td>
      ${trafficCell('(default)')}
    </tr>`;
  return `<section id="routes" aria-labelledby="routes-title">
  <h2 id="routes-title">Routes <small>first match wins · ${m.routes.routes.length} rules · default ${esc(m.routes.default)}</small></h2>
  <table id="routes-table">
    <thead><tr><th>#</th><th>job type</th><th>backend / split</th><th>options</th><th class="num" title="known job types this rule decides">job types</th><th class="num" title="requests in the last 5 minutes, by backend">req 5 min</th></tr></thead>
    <tbody>${rows.join('')}${defaultRow}</tbody>
  </table>
</section>`;
}

function backendsSection(m: PageModel): string {
  const rows = m.backends.map((b) => {
    const health = b.up === null ? '<span class="unknown">unknown</span>' : b.up ? '<span class="good">up</span>' : '<span class="bad">down</span>';
    const circuit = b.circuit === 'closed' ? '<span class="good">closed</span>' : `<span class="bad">${esc(b.circuit)}</span>`;
    return `<tr data-backend="${esc(b.name)}" data-up="${b.up === null ? 'unknown' : String(b.up)}" data-circuit="${esc(b.circuit)}">
      <td data-col="name" data-kind="${esc(b.kind)}"><span class="backend ${b.legacy ? 'old' : 'new'}">${esc(b.name)}</span>${b.legacy ? ' <small>legacy</small>' : ''}${b.default ? ' <small>default</small>' : ''}${b.kind === 'taskcluster' ? ' <small class="kind">Taskcluster queue</small>' : ''}<br><small class="url">${esc(b.url)}</small></td>
      <td data-col="health">${health}<br><small title="${esc(b.lastProbeError ?? '')}">probe ${esc(ago(b.lastProbeAt, m.now))}${b.lastProbeError ? `: ${esc(b.lastProbeError.slice(0, 80))}` : ''}</small></td>
      <td data-col="circuit">${circuit}</td>
      <td class="num" data-col="inFlight">${b.inFlight}</td>
      <td class="num" data-col="requests">${b.recent.requests}</td>
      <td class="num${b.recent.errorRatio ? ' bad' : ''}" data-col="errorRatio">${pct(b.recent.errorRatio, 1)}</td>
    </tr>`;
  });
  return `<section id="backends" aria-labelledby="backends-title">
  <h2 id="backends-title">Backends</h2>
  <table id="backends-table">
    <thead><tr><th>backend</th><th>health</th><th>circuit</th><th>in flight</th><th>req 5 min</th><th>errors</th></tr></thead>
    <tbody>${rows.join('')}</tbody>
  </table>
</section>`;
}

/** A link to the page filtered to one job type; a plain link, so it works without JavaScript. */
function jobTypeLink(jobType: string, window: string): string {
  return `<a href="${pageHref({ jobType, window })}"><code>${esc(jobType)}</code></a>`;
}

function queueBlock(q: QueueBackendView, view: QueuesView, now: Date, window: string): string {
  const credentials = q.credentials.set
    ? `<span class="good" data-col="credentials" data-set="true">credentials set</span>`
    : `<span class="bad" data-col="credentials" data-set="false">no credentials</span> <small>(set ${esc(q.credentials.clientIdEnv)} and ${esc(q.credentials.accessTokenEnv)})</small>`;
  const jobTypes = q.jobTypes.length
    ? q.jobTypes.map((j) => `<span data-job-type="${esc(j.jobType)}">${jobTypeLink(j.jobType, window)}${j.share < 1 ? ` ${pct(j.share)}` : ''}</span>`).join(' · ')
    : '<small>none known by name (a glob or regex rule may still send job types here)</small>';
  const rows = q.tasks.map((t) => {
    const state = t.state === 'created' ? '' : ` <span class="${t.state === 'pending' ? 'unknown' : 'bad'}" title="${esc(t.stateReason ?? '')}">${esc(t.state)}</span>`;
    const queueState = t.queueState === null ? '<small>not seen yet</small>' : `<span class="qs ${esc(t.queueState)}">${esc(t.queueState)}</span>${t.runs !== null && t.runs > 1 ? ` <small>${t.runs} runs</small>` : ''}`;
    return `<tr data-task-id="${esc(t.taskId)}" data-buildrequest="${t.buildrequestId}" data-state="${esc(t.state)}" data-queue-state="${esc(t.queueState ?? '')}">
      <td data-col="jobType">${jobTypeLink(t.builderName, window)}</td>
      <td class="num" data-col="buildset">${t.buildsetId}</td>
      <td class="num" data-col="buildrequest">${t.buildrequestId}</td>
      <td class="num" data-col="builds">${t.builds.map((b) => `<span title="build #${b.number}, run ${b.runId}">${b.buildid}</span>`).join('<br>') || '–'}</td>
      <td data-col="taskId"><code>${esc(t.taskId)}</code>${state}</td>
      <td data-col="queueState">${queueState}</td>
      <td data-col="submitted">${time(t.submittedAt)}<br><small>${esc(ago(t.submittedAt, now))}</small></td>
    </tr>`;
  });
  const empty = view.store === null ? 'the store is not open yet' : view.jobType === null ? 'no tasks yet' : `no tasks of ${esc(view.jobType)} on this queue`;
  return `<div class="queue" data-queue="${esc(q.name)}">
    <h3><span class="backend new">${esc(q.name)}</span> <small class="url">${esc(q.rootUrl)}</small> · ${credentials}</h3>
    <div class="queue-job-types"><small>job types:</small> ${jobTypes}</div>
    <table class="queue-tasks">
      <thead><tr><th>job type</th><th class="num">buildset</th><th class="num">buildrequest</th><th class="num">builds</th><th>taskId</th><th>queue state</th><th>submitted</th></tr></thead>
      <tbody>${rows.join('') || `<tr><td colspan="7"><small>${empty}</small></td></tr>`}</tbody>
    </table>
  </div>`;
}

/** The queues section; absent when no backend is a queue. */
function queuesSection(m: PageModel): string {
  const q = m.queues;
  if ('error' in q) {
    return `<section id="queues" aria-labelledby="queues-title"><h2 id="queues-title">Taskcluster queues</h2><pre class="error" data-col="store-error">${esc(q.error)}</pre></section>`;
  }
  if (q.backends.length === 0) return '';
  const filter = q.jobType === null ? `newest ${q.limit} per queue` : `job type <code>${esc(q.jobType)}</code>, newest ${q.limit} · <a href="${pageHref({ jobType: null, window: m.builds.window })}">all job types</a>`;
  return `<section id="queues" aria-labelledby="queues-title" data-store="${esc(q.store ?? '')}" data-job-type="${esc(q.jobType ?? '')}">
  <h2 id="queues-title">Taskcluster queues <small>recent tasks by their Buildbot ids · ${filter} · store ${esc(q.store ?? 'not open')}</small></h2>
  ${q.backends.map((b) => queueBlock(b, q, m.now, m.builds.window)).join('')}
</section>`;
}

function movedText(v: ConfigVersion): string {
  if (v.result === 'failure') return '';
  if (v.moved.length === 0) return '<small>no job type changed backend</small>';
  const shown = v.moved.slice(0, 5).map((c) => {
    const side = (shares: Record<string, number>) => Object.entries(shares).map(([b, s]) => (s === 1 ? esc(b) : `${esc(b)} ${pct(s)}`)).join(' · ');
    return `<li data-moved-job-type="${esc(c.jobType)}"><code>${esc(c.jobType)}</code> ${side(c.before)} → ${side(c.after)}${c.requests ? ` <small>(${c.requests} req in the last hour)</small>` : ''}</li>`;
  });
  const more = v.moved.length > 5 ? `<li><small>and ${v.moved.length - 5} more (GET /history)</small></li>` : '';
  return `<ul class="moved">${shown.join('')}${more}</ul><small>${pct(v.movedShareOfLastHour, 1)} of the last hour's requests change backend</small>`;
}

function historySection(m: PageModel): string {
  const items = m.history.slice(0, HISTORY_ROWS).map(
    (v) => `<li data-result="${esc(v.result)}" data-hash="${esc(v.hash ?? '')}" data-trigger="${esc(v.trigger)}">
      <div class="when">${time(v.at)} <small>${esc(ago(v.at, m.now))} · ${esc(v.trigger)}</small></div>
      <div><span class="${v.result === 'success' ? 'good' : 'bad'}">${v.result === 'success' ? 'loaded' : 'rejected'}</span> <code title="${esc(v.hash ?? '')}">${esc((v.hash ?? 'unreadable').slice(0, 12))}</code>
      ${v.error ? `<pre class="error">${esc(v.error)}</pre><small>the previous routes stayed in force</small>` : movedText(v)}</div>
    </li>`,
  );
  return `<section id="reloads" aria-labelledby="history-title">
  <h2 id="history-title">Recent reloads <small>newest first</small></h2>
  <ol id="history">${items.join('') || '<li>none</li>'}</ol>
</section>`;
}

function latencyCells(c: LatencyCounts | undefined, backend: string): string {
  if (!c) return `<td class="num" data-backend="${esc(backend)}" data-col="requests">–</td><td class="num">–</td><td class="num">–</td><td class="num sep">–</td>`;
  return `<td class="num" data-backend="${esc(backend)}" data-col="requests">${c.requests}</td><td class="num${c.errors ? ' bad' : ''}" data-col="errorRatio">${pct(c.errorRatio, 1)}</td><td class="num" data-col="p50">${seconds(c.p50)}</td><td class="num sep" data-col="p95">${seconds(c.p95)}</td>`;
}

function jobTypeLabel(j: ProgressJobType): string {
  switch (j.label) {
    case 'none':
      return '<i>no job type</i>';
    case 'other':
      return '<i>other</i> <small>(past the label limit)</small>';
    case 'multiple':
      return '<i>several</i> <small>(forces naming several builders)</small>';
    default:
      return `<code>${esc(j.jobType)}</code>`;
  }
}

function jobTypesSection(m: PageModel): string {
  const cols = columnOrder(m.routes);
  const legacy = m.routes.legacy;
  const list = m.progress.jobTypes;
  const rows = list.slice(0, MAX_JOB_TYPE_ROWS).map((j) => {
    const now = j.requests['5m'];
    const shares = cols.filter((b) => (j.shares[b] ?? 0) > 0).map((b) => `<span class="backend ${b === legacy ? 'old' : 'new'}">${esc(b)}</span>${j.shares[b] === 1 ? '' : ` ${pct(j.shares[b])}`}`);
    return `<tr data-job-type="${esc(j.jobType)}" data-label="${esc(j.label)}">
      <td data-col="jobType">${jobTypeLabel(j)}</td>
      <td data-col="rule">${j.rule === null ? '<small>default</small>' : `<code>${esc(j.rule)}</code>`}</td>
      <td data-col="routed">${shares.join(' · ') || (j.label === 'multiple' ? '<small>as its builders say</small>' : '–')}</td>
      ${cols.map((b) => latencyCells(now.byBackend[b], b)).join('')}
      <td class="num" data-col="total">${j.requests.all.requests}</td>
    </tr>`;
  });
  const more = list.length > MAX_JOB_TYPE_ROWS ? `<p><small>${list.length - MAX_JOB_TYPE_ROWS} more job types in GET /progress.</small></p>` : '';
  return `<section id="job-types" aria-labelledby="jobtypes-title">
  <h2 id="jobtypes-title">Job types <small>last 5 minutes, old and new side by side · ${list.length} job types</small></h2>
  <table id="jobtypes-table">
    <thead>
      <tr><th rowspan="2">job type</th><th rowspan="2">rule</th><th rowspan="2">routed to</th>${cols.map((b) => `<th colspan="4" class="group ${b === legacy ? 'old' : 'new'}">${esc(b)}${b === legacy ? ' <small>legacy</small>' : ''}</th>`).join('')}<th rowspan="2" title="requests since start">since start</th></tr>
      <tr>${cols.map(() => '<th>req</th><th>err</th><th>p50</th><th class="sep">p95</th>').join('')}</tr>
    </thead>
    <tbody>${rows.join('') || `<tr><td colspan="${4 + cols.length * 4}">no job types known and no traffic yet</td></tr>`}</tbody>
  </table>
  ${more}
</section>`;
}

function contentOf(m: PageModel): string {
  const r = m.routes;
  return `<div id="content" data-hash="${esc(r.hash)}" data-generated-at="${esc(m.now.toISOString())}">
<div class="meta">
  routes <code id="config-hash" data-hash="${esc(r.hash)}" title="sha256 ${esc(r.hash)}">${esc(r.hash.slice(0, 12))}</code>
  loaded <span id="loaded-at" data-loaded-at="${esc(r.loadedAt)}">${time(r.loadedAt)} (${esc(ago(r.loadedAt, m.now))})</span>
  from <code id="config-file">${esc(r.file)}</code>
</div>
${progressSection(m)}
${buildsSection(m.builds, m.jobType)}
<div class="grid">
  <div>${routesSection(m)}</div>
  <div>${backendsSection(m)}${historySection(m)}</div>
</div>
${queuesSection(m)}
${jobTypesSection(m)}
<footer>JSON: <a href="/routes">/routes</a> · <a href="/progress">/progress</a> · <a href="/backends">/backends</a> · <a href="/queues">/queues</a> · <a href="/builds">/builds</a> · <a href="/history">/history</a> · <a href="/explain">/explain</a> · <a href="/metrics">/metrics</a> · POST /reload, POST /explain: ${m.postsEnabled ? 'enabled (bearer token)' : 'disabled (no STRANGLER_ADMIN_TOKEN)'} · page generated ${time(m.now.toISOString())} by replica <span data-field="replica">${esc(m.replica.name)}</span>${m.replica.store === null ? '' : ` (store: ${esc(m.replica.store)}; ids, tracked builds and the build comparison are the same on every replica sharing it; traffic and reload history are this replica's)`}</footer>
</div>`;
}

/** The page for a browser that has not given the token while reads are protected. */
function lockedContent(message: string): string {
  // SECURITY: the input has no name attribute, so submitting the form without JavaScript sends nothing
  // (a token must never end up in a URL); CSP form-action 'none' blocks the submission anyway.
  return `<div id="content" data-locked="true">
<section id="locked"><h2>Admin reads are protected</h2>
<p>${esc(message)}</p>
<form id="token-form" action="#" autocomplete="off"><label>Admin token <input id="token-input" type="password" autocomplete="off" size="40"></label> <button type="submit">Show</button></form>
<p><small>With JavaScript the page sends it as <code>Authorization: Bearer …</code> and keeps it for this tab only (sessionStorage). Without JavaScript, use a client that sends the header, e.g. <code>curl -H "Authorization: Bearer $STRANGLER_ADMIN_TOKEN" …/progress</code>.</small></p>
</section></div>`;
}

const STYLE = `
:root{--old:#b45309;--old-bg:#fde7c7;--new:#047857;--new-bg:#c8f0dd;--line:#d8dde3;--muted:#5b6570;--bad:#b91c1c;--good:#047857}
*{box-sizing:border-box}
body{margin:0;padding:10px 16px;font:13px/1.35 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#15191e;background:#f6f7f9}
h1{font-size:17px;margin:0 12px 0 0;display:inline}
h2{font-size:14px;margin:12px 0 6px}
h2 small,small{color:var(--muted);font-weight:normal}
header{display:flex;align-items:baseline;flex-wrap:wrap;gap:6px}
#refresh-status{color:var(--muted);font-size:12px}
#refresh-status[data-state=stale]{color:var(--bad)}
.meta{margin:4px 0 2px;color:var(--muted)}
code.pattern{white-space:nowrap}
code{font:12px/1.3 ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;color:#15191e}
section{overflow-x:auto;background:#fff;border:1px solid var(--line);border-radius:6px;padding:4px 10px 8px;margin:8px 0}
.grid{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,2fr);gap:0 10px}
.progress-row{display:grid;grid-template-columns:270px minmax(0,1fr) 380px;align-items:center;gap:10px;margin:4px 0}
.bar{height:18px;background:var(--old-bg);border:1px solid var(--line);border-radius:4px;overflow:hidden;display:flex}
.bar.mini{height:6px;margin-top:3px;max-width:160px}
.seg{display:block;height:100%}
.seg.new{background:var(--new)}
.seg.old{background:var(--old)}
.seg+.seg{border-left:1px solid #fff}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:3px 6px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:12px;color:var(--muted);font-weight:600;white-space:nowrap}
th.group{text-align:center;border-bottom:2px solid}
th.group.old{color:var(--old)}th.group.new{color:var(--new)}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.sep,th.sep{border-right:1px solid var(--line)}
tr.overridden td{color:var(--muted)}
tr.default-row td{background:#fafbfc}
.backend{font-weight:600}
.backend.old{color:var(--old)}.backend.new{color:var(--new)}
.good{color:var(--good);font-weight:600}.bad{color:var(--bad);font-weight:600}.unknown{color:var(--muted)}
.url{word-break:break-all}
#history{list-style:none;margin:0;padding:0}
#history li{border-bottom:1px solid var(--line);padding:4px 0}
#history .when{color:var(--muted);font-size:12px}
ul.moved{margin:2px 0;padding-left:18px}
pre.error{white-space:pre-wrap;word-break:break-word;margin:3px 0;padding:4px 6px;background:#fdecec;border-left:3px solid var(--bad);font-size:12px}
footer{color:var(--muted);font-size:12px;margin:6px 0}
h3{font-size:13px;margin:8px 0 4px}
.queue+.queue{border-top:1px solid var(--line);margin-top:6px}
.qs.completed{color:var(--good);font-weight:600}.qs.failed,.qs.exception{color:var(--bad);font-weight:600}
footer a{color:inherit}
@media (max-width:1100px){.grid{grid-template-columns:1fr}.progress-row{grid-template-columns:1fr}}
`;

/** The refresh loop; the per-response nonce lets CSP allow exactly this script. */
function script(refreshMs: number): string {
  return `(() => {
  'use strict';
  const KEY = 'strangler-admin-token';
  const every = ${Math.max(500, Math.floor(refreshMs))};
  const status = document.getElementById('refresh-status');
  let timer;
  const say = (state, text) => { if (status) { status.dataset.state = state; status.textContent = text; } };
  async function refresh() {
    clearTimeout(timer);
    if (document.hidden) { timer = setTimeout(refresh, every); return; }
    try {
      const headers = { accept: 'text/html' };
      const token = sessionStorage.getItem(KEY);
      if (token) headers.authorization = 'Bearer ' + token;
      const res = await fetch(location.pathname + location.search, { headers, cache: 'no-store', credentials: 'omit', redirect: 'error' });
      const doc = new DOMParser().parseFromString(await res.text(), 'text/html');
      const next = doc.getElementById('content');
      const here = document.getElementById('content');
      if (next && here) here.replaceWith(document.importNode(next, true));
      if (doc.title) document.title = doc.title;
      if (res.status === 401) { sessionStorage.removeItem(KEY); say('locked', 'needs the admin token'); }
      else if (!res.ok) say('stale', 'not updating: HTTP ' + res.status + ', retrying');
      else say('live', 'live · updated ' + new Date().toLocaleTimeString());
    } catch (error) {
      say('stale', 'not updating (' + (error && error.message ? error.message : 'network error') + '), retrying');
    }
    timer = setTimeout(refresh, every);
  }
  document.addEventListener('submit', (event) => {
    const form = event.target;
    if (!form || form.id !== 'token-form') return;
    event.preventDefault();
    const input = document.getElementById('token-input');
    if (input && input.value) sessionStorage.setItem(KEY, input.value);
    refresh();
  });
  say('live', 'live · refreshes every ' + Math.round(every / 1000) + ' s');
  document.documentElement.dataset.refresh = 'on';
  timer = setTimeout(refresh, document.getElementById('content')?.dataset.locked && sessionStorage.getItem(KEY) ? 0 : every);
})();`;
}

function documentOf(title: string, body: string, refreshMs: number, nonce: string): string {
  const noscriptRefresh = Math.max(5, Math.round(refreshMs / 1000) * 3);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>${esc(title)}</title>
<noscript><meta http-equiv="refresh" content="${noscriptRefresh}"></noscript>
<style>${STYLE}${BUILDS_STYLE}</style>
</head>
<body>
<header><h1>strangler-proxy</h1><span id="refresh-status" data-state="static">refreshes every ${noscriptRefresh} s (JavaScript off)</span></header>
${body}
<script nonce="${esc(nonce)}">${script(refreshMs)}</script>
</body>
</html>`;
}

export function renderStatusPage(m: PageModel, nonce: string): string {
  const title = `strangler-proxy · ${pct(m.progress.summary.jobTypeShare)} of job types on the new service · ${m.routes.hash.slice(0, 8)}`;
  return documentOf(title, contentOf(m), m.refreshMs, nonce);
}

export function renderLockedPage(message: string, refreshMs: number, nonce: string): string {
  return documentOf('strangler-proxy · admin token needed', lockedContent(message), refreshMs, nonce);
}

/** SECURITY: the page's CSP: nothing from other hosts, only the nonce'd script, no framing, no form posts. */
export function statusPageCsp(nonce: string): string {
  return [
    "default-src 'none'",
    `script-src 'nonce-${nonce}'`,
    "style-src 'unsafe-inline'",
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}
