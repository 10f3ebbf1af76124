/**
 * `strangler-proxy report` as users run it: the built bin in a child process,
 * asking a running proxy (stand-in legacy master and queue, the embedded
 * store seeded with finished builds) for its build comparison, printed as a
 * table, JSON and CSV; and the one-line errors when the proxy cannot be
 * asked, answers an error, or the command line is wrong.
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { BuildsView } from '../../src/admin/views.js';
import { commandEnv, requireBuiltCli, ROOT, runCli } from '../support/cli-process.js';
import { buildsOf, results, scenario, startProxyWithBuilds, type ProxyWithBuilds } from '../support/outcomes.js';
import { routesYaml, startTestProxy } from '../support/proxy.js';
import { freePort } from '../support/upstream.js';

const TOKEN = 'report-e2e-token-0123456789abcdef';
/** A job type a client named, with a quote and a comma: CSV must quote it. */
const ODD = 'odd "name", with comma';
/** A job type that is a spreadsheet formula. */
const FORMULA = '=HYPERLINK("http://x")';

const ENV = commandEnv();

const report = (args: string[], env: Record<string, string> = {}) => runCli(['report', ...args], { env: { ...ENV, ...env } });

/** RFC 4180 records: fields split on commas outside quotes, "" inside quotes a quote, records ended by CRLF. */
function parseCsv(text: string): string[][] {
  const records: string[][] = [];
  let field = '';
  let record: string[] = [];
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') (field += '"'), i++;
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') record.push(field), (field = '');
    else if (c === '\r' && text[i + 1] === '\n') record.push(field), records.push(record), (record = []), (field = ''), i++;
    else field += c;
  }
  expect(field + record.join(''), 'the text ends with CRLF').to.equal('');
  return records;
}

describe('e2e: strangler-proxy report', function () {
  this.timeout(60_000);
  let world: ProxyWithBuilds;
  let admin: string;

  before(async function () {
    requireBuiltCli();
    const now = Date.now();
    world = await startProxyWithBuilds(
      [
        ...scenario(now),
        ...buildsOf({ backend: 'queue', jobType: ODD, results: results(1, 0), seconds: 5, lastAt: now - 60_000 }),
        ...buildsOf({ backend: 'queue', jobType: FORMULA, results: results(0, 1), seconds: 5, lastAt: now - 60_000 }),
      ],
      { adminToken: TOKEN, protectAdminReads: true },
    );
    admin = world.proxy.adminUrl;
  });
  after(async () => {
    await world?.close();
  });

  it('prints the comparison as an aligned table, then why each verdict was reached', async () => {
    const r = await report(['--admin', admin], { STRANGLER_ADMIN_TOKEN: TOKEN });
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stderr).to.equal('');
    const lines = r.stdout.split('\n');
    expect(lines[0]).to.match(/^builds finished in the last 24h \(\d{4}-\d\d-\d\d \d\d:\d\d UTC to \d{4}-\d\d-\d\d \d\d:\d\d UTC\); legacy: buildbot; a verdict needs 10 counted builds a side$/);
    expect(lines[1]).to.equal('ready to move: 1  move back: 1  not enough builds yet: 3  only on buildbot: 1');
    const header = lines.find((l) => l.trimStart().startsWith('JOB TYPE'))!;
    expect(header.trim().split(/\s{2,}/)).to.deep.equal(['JOB TYPE', 'BACKEND', 'SIDE', 'BUILDS', 'COUNTED', 'PASS RATE', 'DIFF', 'INFRA EXC', 'P50', 'DIFF', 'P95', 'WAIT P95', 'VERDICT']);
    // Columns are aligned: every value starts where its header does.
    const at = (line: string, column: string) => line.slice(header.indexOf(column)).split(/\s{2,}/)[0];
    const opt = lines.findIndex((l) => l.trimStart().startsWith('linux64-opt'));
    const [legacyRow, queueRow] = [lines[opt]!, lines[opt + 1]!];
    expect([at(legacyRow, 'BACKEND'), at(legacyRow, 'SIDE'), at(legacyRow, 'BUILDS'), at(legacyRow, 'PASS RATE'), at(legacyRow, 'P50'), at(legacyRow, 'WAIT P95'), at(legacyRow, 'VERDICT')]).to.deep.equal([
      'buildbot',
      'legacy',
      '20',
      '90 %',
      '1 min 40 s',
      '20 s',
      'reference',
    ]);
    expect([at(queueRow, 'BACKEND'), at(queueRow, 'SIDE'), at(queueRow, 'BUILDS'), at(queueRow, 'COUNTED'), at(queueRow, 'PASS RATE'), at(queueRow, 'DIFF'), at(queueRow, 'INFRA EXC'), at(queueRow, 'P50'), at(queueRow, 'VERDICT')]).to.deep.equal([
      'queue',
      'new',
      '14',
      '12',
      '66.7 %',
      '-23.3 pts',
      '2',
      '2 min 10 s',
      'worse: move back',
    ]);
    expect(queueRow.trimStart().startsWith('queue'), 'the job type is named once per group').to.equal(true);
    const debug = lines.findIndex((l) => l.trimStart().startsWith('linux64-debug'));
    expect(at(lines[debug + 1]!, 'VERDICT')).to.equal('better: ready to move');
    expect(at(lines[debug + 1]!, 'DIFF')).to.equal('+10 pts');
    const win = lines.find((l) => l.trimStart().startsWith('win32-debug'))!;
    expect(at(win, 'BUILDS')).to.equal('5');

    const why = lines.indexOf('why:');
    expect(why).to.be.above(opt);
    const optWhy = lines.indexOf('  linux64-opt on queue: worse: move back');
    expect(optWhy).to.be.above(why);
    expect(lines.slice(optWhy + 1, optWhy + 3)).to.deep.equal([
      '    pass rate 66.7 % on queue against 90 % on buildbot: 23.3 points lower (more than 5)',
      '    duration p50 2 min 10 s against 1 min 40 s: 30 % longer (more than 20 %)',
    ]);
    expect(r.stdout).to.contain('  android-api-16-test on queue: not enough builds yet\n    queue has 3 and buildbot 10 counted builds in the window; a verdict needs at least 10 on each side');
  });

  it('prints what GET /builds answers with --format json, for one job type, a window and a minimum', async () => {
    const r = await report(['--admin', admin, '--format', 'json', '--job-type', 'linux64-debug', '--window', '1h', '--min-builds', '2'], { STRANGLER_ADMIN_TOKEN: TOKEN });
    expect(r.code, r.stderr).to.equal(0);
    const view = JSON.parse(r.stdout) as BuildsView;
    expect(view).to.deep.include({ jobType: 'linux64-debug', legacy: 'buildbot', rules: { minBuilds: 2, passRateMarginPoints: 5, durationMargin: 0.2 } });
    expect(view.window).to.deep.include({ name: '1h', seconds: 3600 });
    expect(view.jobTypes.map((j) => j.jobType)).to.deep.equal(['linux64-debug']);
    // The last hour: 2 builds a side (10 and 40 minutes ago); the queue's cancelled one is older.
    const [legacy, queue] = view.jobTypes[0]!.sides;
    expect([legacy!.builds, legacy!.passed, queue!.builds, queue!.passed, queue!.durationP50]).to.deep.equal([2, 1, 2, 2, 60]);
    expect(view.jobTypes[0]!.verdicts[0]).to.deep.include({ backend: 'queue', verdict: 'better' });

    // The same as asking the API directly.
    const direct = (await (await fetch(`${admin}/builds?window=1h&jobType=linux64-debug&minBuilds=2`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as BuildsView;
    // Both end at their own "now": everything but the times is the same.
    const untimed = (v: BuildsView) => JSON.parse(JSON.stringify({ ...v, window: v.window.name }, (key, value: unknown) => (key === 'start' || key === 'end' ? undefined : value))) as unknown;
    expect(untimed(view)).to.deep.equal(untimed(direct));
  });

  it('prints CSV by RFC 4180: a header, a row per job type and backend, quoted where needed, CRLF', async () => {
    const r = await report(['--admin', admin, '--format', 'csv'], { STRANGLER_ADMIN_TOKEN: TOKEN });
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout.endsWith('\r\n')).to.equal(true);
    expect(r.stdout.replace(/\r\n/g, '')).not.to.match(/[\r\n]/);
    const [header, ...rows] = parseCsv(r.stdout);
    expect(header).to.deep.equal([
      'window_start', 'window_end', 'job_type', 'backend', 'side', 'builds',
      'success', 'warnings', 'failure', 'skipped', 'exception', 'retry', 'cancelled',
      'counted', 'passed', 'pass_rate', 'infrastructure_exceptions', 'duration_p50_seconds', 'duration_p95_seconds', 'wait_p95_seconds',
      'verdict', 'pass_rate_points_difference', 'duration_p50_change', 'duration_p50_seconds_difference', 'duration_p95_seconds_difference',
      'wait_p95_seconds_difference', 'infrastructure_exceptions_difference', 'reasons',
    ]); // prettier-ignore
    for (const row of rows) expect(row).to.have.length(header!.length);
    const record = (jobType: string, backend: string) => Object.fromEntries(header!.map((h, i) => [h, rows.find((x) => x[2] === jobType && x[3] === backend)![i]]));
    expect(rows.map((x) => `${x[2]}/${x[3]}`)).to.deep.equal([
      `'${FORMULA}/buildbot`,
      `'${FORMULA}/queue`,
      'android-api-16-test/buildbot',
      'android-api-16-test/queue',
      'linux64-debug/buildbot',
      'linux64-debug/queue',
      'linux64-opt/buildbot',
      'linux64-opt/queue',
      `${ODD}/buildbot`,
      `${ODD}/queue`,
      'win32-debug/buildbot',
    ]);
    expect(record('linux64-opt', 'queue')).to.deep.include({
      side: 'new', builds: '14', success: '8', failure: '4', retry: '2', cancelled: '0', counted: '12', passed: '8',
      infrastructure_exceptions: '2', duration_p50_seconds: '130', wait_p95_seconds: '40', verdict: 'worse',
      pass_rate_points_difference: '-23.333333333', duration_p50_change: '0.3', infrastructure_exceptions_difference: '2',
      reasons: 'pass rate 66.7 % on queue against 90 % on buildbot: 23.3 points lower (more than 5); duration p50 2 min 10 s against 1 min 40 s: 30 % longer (more than 20 %)',
    }); // prettier-ignore
    expect(Number(record('linux64-opt', 'queue').pass_rate)).to.be.closeTo(8 / 12, 1e-12);
    expect(record('linux64-opt', 'buildbot')).to.deep.include({ side: 'legacy', pass_rate: '0.9', verdict: '', pass_rate_points_difference: '', reasons: '' });
    expect(record('win32-debug', 'buildbot')).to.deep.include({ builds: '5', passed: '4', duration_p50_seconds: '300' });
    // Quoting, and the formula kept from a spreadsheet by a leading apostrophe.
    expect(r.stdout).to.contain(`,"odd ""name"", with comma",queue,new,`);
    expect(r.stdout).to.contain(`,"'=HYPERLINK(""http://x"")",queue,new,`);
    const [start, end] = [record('linux64-opt', 'queue').window_start!, record('linux64-opt', 'queue').window_end!];
    expect(Date.parse(end) - Date.parse(start)).to.equal(86_400_000);
  });

  it('says in one line, exit 1, when the proxy cannot be asked or answers an error', async () => {
    const unreachable = `http://127.0.0.1:${await freePort()}`;
    const down = await report(['--admin', unreachable]);
    expect([down.code, down.stdout]).to.deep.equal([1, '']);
    expect(down.stderr).to.equal(`cannot ask the running proxy at ${unreachable}: ECONNREFUSED\n`);

    const noToken = await report(['--admin', admin]);
    expect(noToken.code).to.equal(1);
    expect(noToken.stderr).to.match(/^http:\/\/127\.0\.0\.1:\d+\/builds\?window=24h answered 401: missing Authorization header: .* \(set STRANGLER_ADMIN_TOKEN to the proxy's admin token\)\n$/);
    const wrong = await report(['--admin', admin], { STRANGLER_ADMIN_TOKEN: 'not-the-token' });
    expect(wrong.stderr).to.match(/answered 401: wrong bearer token: .*\(STRANGLER_ADMIN_TOKEN does not match the proxy's token\)\n$/);
    for (const r of [noToken, wrong]) expect(r.stderr).not.to.contain(TOKEN);
    for (const r of [down, noToken, wrong]) expect(r.stderr.split('\n')).to.have.length(2); // one line, no stack
  });

  it('says build tracking is off, and why, against a proxy with no store', async () => {
    // Its routes name no queue and no `track: true`, and it has no store or data folder: build tracking is off.
    const { proxy, close } = await startTestProxy(routesYaml({ buildbot: { url: `http://127.0.0.1:${await freePort()}`, legacy: true } }, 'routes: []\n'));
    try {
      const r = await report(['--admin', proxy.adminUrl, '--format', 'csv']);
      expect([r.code, r.stdout]).to.deep.equal([1, '']);
      expect(r.stderr).to.match(/^http:\/\/127\.0\.0\.1:\d+\/builds\?window=24h answered 503: build tracking is off: no store is open, .*`track: true`.*--store.*\n$/);
      expect(r.stderr.split('\n')).to.have.length(2);
    } finally {
      await close();
    }
  });

  for (const [args, message] of [
    [[], 'report needs --admin URL: the builds are counted by a running proxy, e.g. --admin http://127.0.0.1:8081'],
    [['--admin', 'http://127.0.0.1:1', '--window', '2 days'], '--window: a window is a whole number and a unit, m (minutes), h (hours) or d (days), at most 90d, e.g. 1h, 24h or 7d; got "2 days"'],
    [['--admin', 'http://127.0.0.1:1', '--format', 'xml'], '--format must be table, json, csv; got "xml"'],
    [['--admin', 'http://127.0.0.1:1', '--min-builds', '0'], '--min-builds must be a whole number from 1 to 999999, got "0"'],
    [['--admin', 'http://127.0.0.1:1', '--job-type', 'a', '--job-type', 'b'], 'report takes one --job-type NAME (or none, for every job type)'],
    [['--admin', 'http://127.0.0.1:1', '--json'], 'report does not take --json'],
    [['--admin', 'ftp://x'], '--admin expects an http:// or https:// URL, got "ftp://x"'],
    [['--admin', 'http://127.0.0.1:1', 'extra'], 'report takes no arguments, got "extra"'],
  ] as const) {
    it(`a usage error, one line and exit 2: ${args.join(' ') || '(no options)'}`, async () => {
      const r = await report([...args]);
      expect([r.code, r.stdout]).to.deep.equal([2, '']);
      expect(r.stderr).to.equal(`${message} (see strangler-proxy report --help)\n`);
    });
  }

  it('--help says what it prints, its options and exit codes', async () => {
    const r = await report(['--help']);
    expect(r.code).to.equal(0);
    for (const text of ['Usage: strangler-proxy report --admin URL', '--window W', '--format F', 'csv', '--job-type NAME', '--min-builds N', 'STRANGLER_ADMIN_TOKEN', 'docs/build-comparison.md', 'Exit codes: 0 printed, 1']) {
      expect(r.stdout).to.contain(text);
    }
    const help = await runCli(['--help'], { env: ENV });
    expect(help.stdout).to.contain('strangler-proxy report --admin URL [--window 24h] [--format table|json|csv] [--job-type NAME] [--min-builds N]');
    expect(readFileSync(path.join(ROOT, 'docs', 'build-comparison.md'), 'utf8')).to.contain('strangler-proxy report');
  });
});
