/**
 * The status page's "Builds: new vs legacy" section: per job type both sides'
 * builds, pass rate, duration and wait, the differences, the verdict in
 * words and colour, and two small charts drawn here as inline SVG (pass rate
 * and duration p50 over the window), so it all works without JavaScript.
 * Every point carries its value in a <title> and in data attributes.
 *
 * SECURITY: job types come from client requests; every value goes through
 * `esc()`, in text and in attributes alike.
 */
import { duration, VERDICT_ADVICE, type SeriesPoint, type SideBuilds, type SideVerdict, type Verdict } from '../tracking/compare.js';
import { esc } from './html.js';
import type { BuildsView } from './views.js';

/** The build comparison over the page's window, or why there is none. */
export type BuildsSection = { window: string; view: BuildsView } | { window: string; off: string } | { window: string; error: string };

/** The windows the page links to, and the one it shows without `?window=`. */
export interface PageQuery {
  jobType: string | null;
  window: string;
}

export const PAGE_WINDOWS = ['1h', '24h', '7d'] as const;
const DEFAULT_PAGE_WINDOW = '24h';
/** Job types shown; GET /builds has them all. */
const MAX_JOB_TYPES = 200;

/** A link to the page with these parameters: plain links work without JavaScript, and the refresh keeps them (it re-fetches location.search). */
export function pageHref(query: PageQuery): string {
  const params = new URLSearchParams();
  if (query.jobType !== null) params.set('jobType', query.jobType);
  if (query.window !== DEFAULT_PAGE_WINDOW) params.set('window', query.window);
  const text = params.toString();
  return esc(text ? `?${text}` : '?');
}

/** The colour of each verdict: green ready to move, red move back, grey not yet known. */
const VERDICT_CLASS: Record<Verdict, 'good' | 'bad' | 'unknown'> = { better: 'good', 'as-good': 'good', worse: 'bad', 'not-enough-builds': 'unknown' };

const percent = (share: number | null): string => (share === null ? '–' : `${(share * 100).toFixed(1).replace(/\.0$/, '')} %`);
const signed = (x: number, text: string): string => (x === 0 ? '±0' : `${x > 0 ? '+' : '−'}${text}`);
const dataValue = (x: number | null): string => (x === null ? '' : String(x));

function diffTag(name: string, value: number | null, text: (x: number) => string): string {
  if (value === null) return '';
  return `<br><small class="diff" data-diff="${name}" data-value="${value}">${esc(signed(value, text(Math.abs(value))))}</small>`;
}

function sideRow(s: SideBuilds, verdict: SideVerdict | undefined, first: string, last: string): string {
  const d = verdict?.differences;
  const results = Object.entries(s.results)
    .filter(([, n]) => n > 0)
    .map(([name, n]) => `${name} ${n}`)
    .join(', ');
  const verdictCell =
    verdict === undefined
      ? '<td data-col="verdict"><small>the reference</small></td>'
      : `<td data-col="verdict" data-verdict="${esc(verdict.verdict)}"><span class="verdict ${VERDICT_CLASS[verdict.verdict]}">${esc(VERDICT_ADVICE[verdict.verdict])}</span><ul class="reasons">${verdict.reasons.map((r) => `<li>${esc(r)}</li>`).join('')}</ul></td>`;
  return `<tr data-backend="${esc(s.backend)}" data-side="${s.side}">
      ${first}<td data-col="backend"><span class="backend ${s.side === 'legacy' ? 'old' : 'new'}">${esc(s.backend)}</span> <small>${s.side}</small></td>
      <td class="num" data-col="builds" data-value="${s.builds}" data-counted="${s.counted}" title="${esc(results || 'none')}">${s.builds}<br><small>${s.counted} counted</small></td>
      <td class="num" data-col="passRate" data-value="${dataValue(s.passRate)}" data-passed="${s.passed}">${percent(s.passRate)}<br><small>${s.passed} of ${s.counted}</small>${diffTag('passRatePoints', d?.passRatePoints ?? null, (x) => `${x.toFixed(1).replace(/\.0$/, '')} pts`)}</td>
      <td class="num" data-col="infrastructureExceptions" data-value="${s.infrastructureExceptions}">${s.infrastructureExceptions}${diffTag('infrastructureExceptions', d?.infrastructureExceptions ?? null, String)}</td>
      <td class="num" data-col="durationP50" data-value="${dataValue(s.durationP50)}">${esc(duration(s.durationP50))}${diffTag('durationP50Change', d?.durationP50Change ?? null, (x) => `${(x * 100).toFixed(1).replace(/\.0$/, '')} %`)}</td>
      <td class="num" data-col="durationP95" data-value="${dataValue(s.durationP95)}">${esc(duration(s.durationP95))}${diffTag('durationP95Seconds', d?.durationP95Seconds ?? null, duration)}</td>
      <td class="num" data-col="waitP95" data-value="${dataValue(s.waitP95)}">${esc(duration(s.waitP95))}${diffTag('waitP95Seconds', d?.waitP95Seconds ?? null, duration)}</td>
      ${verdictCell}${last}
    </tr>`;
}

/** `2030-01-01 03:00–04:00 UTC` (the date again when the slice ends on another day). */
function sliceText(p: SeriesPoint): string {
  const start = p.start.slice(0, 16).replace('T', ' ');
  const end = p.end.slice(0, 10) === p.start.slice(0, 10) ? p.end.slice(11, 16) : p.end.slice(0, 16).replace('T', ' ');
  return `${start}–${end} UTC`;
}

const CHART = { width: 240, height: 64, pad: 6 };

/**
 * A small line chart: one line per side (legacy first), a point per slice
 * with a value, gaps where a slice has none. `value` reads a point's value,
 * `label` says it for people.
 */
function lineChart(kind: 'passRate' | 'durationP50', title: string, sides: readonly SideBuilds[], value: (p: SeriesPoint) => number | null, label: (p: SeriesPoint) => string, yMax: number, yMaxText: string): string {
  const { width, height, pad } = CHART;
  const n = sides[0]?.series.length ?? 1;
  const x = (i: number) => (pad + ((i + 0.5) * (width - 2 * pad)) / n).toFixed(1);
  const y = (v: number) => (pad + (1 - Math.min(1, v / yMax)) * (height - 2 * pad)).toFixed(1);
  const lines = sides.map((s, index) => {
    let path = '';
    let drawing = false;
    const points: string[] = [];
    s.series.forEach((p, i) => {
      const v = value(p);
      if (v === null) {
        drawing = false;
        return;
      }
      path += `${drawing ? 'L' : 'M'}${x(i)} ${y(v)}`;
      drawing = true;
      points.push(
        `<circle class="pt s${Math.min(index, 3)}" cx="${x(i)}" cy="${y(v)}" r="2.2" data-backend="${esc(s.backend)}" data-side="${s.side}" data-bucket="${i}" data-value="${v}" data-builds="${p.builds}"><title>${esc(`${s.backend} (${s.side}), ${sliceText(p)}: ${label(p)}`)}</title></circle>`,
      );
    });
    return `<g data-backend="${esc(s.backend)}" data-side="${s.side}">${path ? `<path class="line s${Math.min(index, 3)}" d="${path}"/>` : ''}${points.join('')}</g>`;
  });
  return `<svg class="chart" data-chart="${kind}" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(title)}"><title>${esc(title)}</title>
      <line class="axis" x1="${pad}" y1="${height - pad}" x2="${width - pad}" y2="${height - pad}"/><text class="ymax" x="${pad}" y="${pad + 3}">${esc(yMaxText)}</text>
      ${lines.join('')}</svg>`;
}

function charts(jobType: string, sides: readonly SideBuilds[]): string {
  const longest = Math.max(0, ...sides.flatMap((s) => s.series.map((p) => p.durationP50 ?? 0)));
  const passRate = lineChart(
    'passRate',
    `pass rate of ${jobType} over time, per side`,
    sides,
    (p) => p.passRate,
    (p) => `pass rate ${percent(p.passRate)} of ${p.counted} counted builds`,
    1,
    '100 %',
  );
  const durations = lineChart(
    'durationP50',
    `duration p50 of ${jobType} over time, per side`,
    sides,
    (p) => p.durationP50,
    (p) => `duration p50 ${duration(p.durationP50)} of ${p.counted} counted builds`,
    longest || 1,
    duration(longest || null),
  );
  return `<div class="chart-box"><small>pass rate</small>${passRate}</div><div class="chart-box"><small>duration p50</small>${durations}</div>`;
}

function summaryText(view: BuildsView): string {
  const s = view.summary;
  const onlyLegacy = view.jobTypes.filter((j) => j.verdicts.length === 0).length;
  const part = (verdicts: Verdict[], words: string, count: number) => `<span data-summary="${verdicts.join(' ')}" data-count="${count}">${words}: <b>${count}</b></span>`;
  return [
    part(['better', 'as-good'], 'ready to move', s.better + s['as-good']),
    part(['worse'], 'move back', s.worse),
    part(['not-enough-builds'], 'not enough builds yet', s['not-enough-builds']),
    `<span data-summary="legacy-only" data-count="${onlyLegacy}">only on ${esc(view.legacy)}: <b>${onlyLegacy}</b></span>`,
  ].join(' · ');
}

function windowLinks(query: PageQuery): string {
  const links = PAGE_WINDOWS.map((w) =>
    w === query.window ? `<b aria-current="page" data-window="${w}">${w}</b>` : `<a href="${pageHref({ ...query, window: w })}" data-window="${w}">${w}</a>`,
  );
  const custom = (PAGE_WINDOWS as readonly string[]).includes(query.window) ? '' : ` · <b aria-current="page" data-window="${esc(query.window)}">${esc(query.window)}</b>`;
  return `<nav id="build-windows" aria-label="time window">window: ${links.join(' · ')}${custom}</nav>`;
}

export function buildsSection(builds: BuildsSection, jobType: string | null): string {
  const query = { jobType, window: builds.window };
  const head = (extra: string) => `<h2 id="builds-title">Builds: new vs legacy <small>${extra}</small></h2>${windowLinks(query)}`;
  if ('off' in builds) {
    return `<section id="builds" aria-labelledby="builds-title" data-tracking="off" data-window="${esc(builds.window)}">${head('build tracking is off')}<p data-col="tracking-off">${esc(builds.off)}</p></section>`;
  }
  if ('error' in builds) {
    return `<section id="builds" aria-labelledby="builds-title" data-tracking="error" data-window="${esc(builds.window)}">${head('')}<pre class="error" data-col="store-error">${esc(builds.error)}</pre></section>`;
  }
  const v = builds.view;
  const filter = v.jobType === null ? '' : ` · job type <code>${esc(v.jobType)}</code> · <a href="${pageHref({ ...query, jobType: null })}">all job types</a>`;
  const extra = `finished in the last ${esc(v.window.name)} (to ${esc(v.window.until.slice(0, 16).replace('T', ' '))} UTC) · a verdict needs ${v.rules.minBuilds} counted builds a side${filter}`;
  const bodies = v.jobTypes.slice(0, MAX_JOB_TYPES).map((j) => {
    const span = j.sides.length;
    const note = j.verdicts.length === 0 ? `<br><small data-col="legacy-only">only on ${esc(v.legacy)} in this window</small>` : '';
    const first = `<td rowspan="${span}" data-col="jobType"><a href="${pageHref({ ...query, jobType: j.jobType })}"><code>${esc(j.jobType)}</code></a>${note}</td>`;
    const last = `<td rowspan="${span}" data-col="charts" class="charts">${charts(j.jobType, j.sides)}</td>`;
    const rows = j.sides.map((s, i) => sideRow(s, j.verdicts.find((x) => x.backend === s.backend), i === 0 ? first : '', i === 0 ? last : ''));
    return `<tbody data-job-type="${esc(j.jobType)}" data-verdicts="${esc(j.verdicts.map((x) => `${x.backend}=${x.verdict}`).join(','))}">${rows.join('')}</tbody>`;
  });
  const more = v.jobTypes.length > MAX_JOB_TYPES ? `<p><small>${v.jobTypes.length - MAX_JOB_TYPES} more job types in GET /builds.</small></p>` : '';
  const legend = `<span class="legend"><svg width="18" height="6" aria-hidden="true"><line class="line s0" x1="0" y1="3" x2="18" y2="3"/></svg> ${esc(v.legacy)} (legacy) <svg width="18" height="6" aria-hidden="true"><line class="line s1" x1="0" y1="3" x2="18" y2="3"/></svg> new side</span>`;
  const table = v.jobTypes.length
    ? `<table id="builds-table">
    <thead><tr><th>job type</th><th>backend</th><th class="num">builds</th><th class="num">pass rate</th><th class="num" title="exception and retry">infra exc.</th><th class="num">duration p50</th><th class="num">p95</th><th class="num">wait p95</th><th>verdict</th><th>over time ${legend}</th></tr></thead>
    ${bodies.join('')}
  </table>${more}`
    : `<p data-col="no-builds">no builds finished in the last ${esc(v.window.name)}${v.jobType === null ? '' : ` for <code>${esc(v.jobType)}</code>`}</p>`;
  return `<section id="builds" aria-labelledby="builds-title" data-tracking="on" data-window="${esc(v.window.name)}" data-min-builds="${v.rules.minBuilds}">
  ${head(extra)}
  <p class="build-summary">${summaryText(v)}</p>
  ${table}
</section>`;
}

/** The section's CSS, added to the page's. */
export const BUILDS_STYLE = `
#build-windows{margin:0 0 4px;color:var(--muted)}
#build-windows b{color:#15191e}
.build-summary{margin:2px 0 6px}
#builds-table tbody{border-top:2px solid var(--line)}
.verdict{font-weight:600}
#builds-table td[data-col=verdict]{min-width:260px}
ul.reasons{margin:2px 0 0;padding-left:16px;font-size:12px;color:var(--muted);max-width:420px}
small.diff{color:var(--muted)}
td.charts{white-space:nowrap}
.chart-box{display:inline-block;margin-right:6px;vertical-align:top}
.chart-box small{display:block}
svg.chart{background:#fafbfc;border:1px solid var(--line);border-radius:3px;display:block}
svg .axis{stroke:var(--line)}
svg .ymax{font-size:9px;fill:var(--muted)}
svg .line{fill:none;stroke-width:1.5}
svg .line.s0{stroke:var(--old)}svg .pt.s0{fill:var(--old)}
svg .line.s1,svg .line.s2,svg .line.s3{stroke:var(--new)}svg .pt.s1,svg .pt.s2,svg .pt.s3{fill:var(--new)}
svg .line.s2{stroke-dasharray:4 2}svg .line.s3{stroke-dasharray:1 2}
.legend{font-weight:normal}
`;
