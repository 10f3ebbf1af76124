/**
 * The status page's "Builds: new vs legacy" section in a real headless Chromium (Debian's
 * /usr/bin/chromium, driven by playwright-core), against a proxy whose embedded store holds
 * finished builds of both sides (test/support/outcomes.ts scenario) and whose stand-in queue
 * runs forced builds: the verdicts in words and colour, the numbers and the charts' values are
 * read as a person would see them, with JavaScript on (a build forced meanwhile shows up without
 * a reload, and the chosen window survives the refresh) and off.
 */
import { expect } from 'chai';
import type { Browser, Page } from 'playwright-core';
import { BuildbotClient } from '../support/buildbot-client.js';
import { launchChromium, pageProblems, requireChromium } from '../support/chromium.js';
import { scenario, startProxyWithBuilds, type ProxyWithBuilds } from '../support/outcomes.js';

/** The page's colours (src/admin/page.ts STYLE): red for move back, green for ready to move. */
const RED = 'rgb(185, 28, 28)';
const GREEN = 'rgb(4, 120, 87)';

async function force(proxyUrl: string, builder: string): Promise<void> {
  const answer = await new BuildbotClient(proxyUrl).force([builder], { revision: 'abc', reason: 'e2e' });
  expect(answer.status, JSON.stringify(answer)).to.equal(200);
}

/** What a row of a job type's side shows, by column. */
async function side(page: Page, jobType: string, backend: string): Promise<Record<string, string>> {
  const row = page.locator(`#builds tbody[data-job-type="${jobType}"] tr[data-backend="${backend}"]`);
  const cells: Record<string, string> = {};
  for (const col of ['builds', 'passRate', 'infrastructureExceptions', 'durationP50', 'durationP95', 'waitP95', 'verdict']) {
    cells[col] = ((await row.locator(`[data-col="${col}"]`).innerText()) ?? '').replace(/\s+/g, ' ').trim();
  }
  return cells;
}

describe('e2e: status page, builds of the two sides compared, in headless Chromium', function () {
  this.timeout(90_000);
  let world: ProxyWithBuilds;
  let browser: Browser;

  before(async function () {
    requireChromium(this, 'the builds section');
    world = await startProxyWithBuilds(scenario(Date.now()), { worker: { runMs: 50 } });
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await world?.close();
  });

  it('shows each job type\'s sides, differences, verdict and charts; a build forced meanwhile appears; the window chosen stays', async () => {
    const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
    const page = await context.newPage();
    const problems = pageProblems(page);
    await page.goto(`${world.proxy.adminUrl}/`);
    expect(await page.evaluate(() => document.documentElement.dataset.refresh)).to.equal('on');
    const section = page.locator('#builds');
    expect(await section.getAttribute('data-tracking')).to.equal('on');
    expect(await section.getAttribute('data-window')).to.equal('24h');
    expect(await page.locator('#builds-title').innerText()).to.contain('Builds: new vs legacy');

    // The verdicts in words, and in colour.
    const verdict = (jobType: string) => page.locator(`#builds tbody[data-job-type="${jobType}"] tr[data-side="new"] .verdict`);
    expect(await verdict('linux64-opt').innerText()).to.equal('worse — move back');
    expect(await verdict('linux64-debug').innerText()).to.equal('better — ready to move');
    expect(await verdict('android-api-16-test').innerText()).to.equal('not enough builds yet');
    expect(await verdict('linux64-opt').evaluate((e) => getComputedStyle(e).color)).to.equal(RED);
    expect(await verdict('linux64-debug').evaluate((e) => getComputedStyle(e).color)).to.equal(GREEN);
    expect(await page.locator('#builds tbody[data-job-type="win32-debug"] [data-col="legacy-only"]').innerText()).to.equal('only on buildbot in this window');
    expect(await page.locator('#builds .build-summary').innerText()).to.equal('ready to move: 1 · move back: 1 · not enough builds yet: 1 · only on buildbot: 1');

    // The numbers, as shown.
    expect(await side(page, 'linux64-opt', 'buildbot')).to.deep.equal({
      builds: '20 20 counted',
      passRate: '90 % 18 of 20',
      infrastructureExceptions: '0',
      durationP50: '1 min 40 s',
      durationP95: '1 min 40 s',
      waitP95: '20 s',
      verdict: 'the reference',
    });
    const queue = await side(page, 'linux64-opt', 'queue');
    expect(queue).to.deep.include({ builds: '14 12 counted', passRate: '66.7 % 8 of 12 −23.3 pts', infrastructureExceptions: '2 +2', durationP50: '2 min 10 s +30 %', durationP95: '2 min 10 s +30 s', waitP95: '40 s +20 s' });
    expect(queue.verdict).to.contain('pass rate 66.7 % on queue against 90 % on buildbot: 23.3 points lower (more than 5)');

    // The charts: a line per side, each point's value in its <title>; the queue's last hour of linux64-opt, two failures in 130 s.
    const chart = (kind: string) => page.locator(`#builds tbody[data-job-type="linux64-opt"] svg[data-chart="${kind}"]`);
    expect(await chart('passRate').getAttribute('role')).to.equal('img');
    expect(await chart('passRate').locator('path.line').count()).to.equal(2);
    const lastPass = chart('passRate').locator('circle[data-backend="queue"][data-bucket="23"]');
    expect(await lastPass.getAttribute('data-value')).to.equal('0');
    expect(await lastPass.locator('title').textContent()).to.match(/^queue \(new\), \d{4}-\d\d-\d\d \d\d:\d\d–\d\d:\d\d UTC: pass rate 0 % of 2 counted builds$/);
    expect(await chart('durationP50').locator('circle[data-backend="queue"][data-bucket="23"]').getAttribute('data-value')).to.equal('130');
    const legacyPoints = await chart('passRate').locator('circle[data-backend="buildbot"]').evaluateAll((cs) => cs.map((c) => [Number(c.getAttribute('data-builds')), Number(c.getAttribute('data-value'))]));
    expect(legacyPoints.reduce((n, [builds]) => n + builds!, 0), 'every legacy build is in a point').to.equal(20);
    // Points are drawn where a person sees them: higher pass rate, higher on the chart.
    const box = await chart('passRate').locator('circle[data-backend="buildbot"]').first().boundingBox();
    const failing = await lastPass.boundingBox();
    expect(box!.y).to.be.below(failing!.y);

    // A build forced now runs on the queue, is tracked to its end, and shows up without a reload.
    await force(world.proxy.proxyUrl, 'linux64-opt');
    await page.locator('#builds tbody[data-job-type="linux64-opt"] tr[data-backend="queue"] [data-col="builds"][data-value="15"]').waitFor({ timeout: 20_000 });
    expect(await chart('passRate').locator('circle[data-backend="queue"][data-bucket="23"]').getAttribute('data-builds')).to.equal('3');

    // The window, by plain link; the refresh keeps it.
    await page.locator('#build-windows a[data-window="7d"]').click();
    await page.waitForURL(/\?window=7d$/);
    expect(await section.getAttribute('data-window')).to.equal('7d');
    expect(await page.locator('#build-windows [aria-current="page"]').innerText()).to.equal('7d');
    await page.waitForFunction(() => document.getElementById('refresh-status')?.textContent?.includes('updated'), undefined, { timeout: 10_000 });
    expect(await page.locator('#builds').getAttribute('data-window')).to.equal('7d');
    expect(await page.locator('#builds-title').innerText()).to.contain('finished in the last 7d');

    expect(problems).to.deep.equal([]);
    await context.close();
  });

  it('is readable, with its charts, with JavaScript off; the window links work', async () => {
    const context = await browser.newContext({ javaScriptEnabled: false });
    const page = await context.newPage();
    await page.goto(`${world.proxy.adminUrl}/?window=1h`);
    expect(await page.evaluate(() => document.documentElement.dataset.refresh).catch(() => undefined)).to.equal(undefined);
    expect(await page.locator('#builds').getAttribute('data-window')).to.equal('1h');
    // The last hour: the two newest builds a side.
    expect((await side(page, 'linux64-debug', 'queue')).builds).to.equal('2 2 counted');
    expect((await side(page, 'linux64-debug', 'queue')).verdict).to.contain('not enough builds yet');
    const points = page.locator('#builds tbody[data-job-type="linux64-debug"] svg[data-chart="durationP50"] circle[data-backend="queue"]');
    expect(await points.count()).to.be.at.least(1);
    expect(await points.last().locator('title').textContent()).to.match(/: duration p50 1 min of \d counted builds$/);

    await page.locator('#build-windows a[data-window="24h"]').click();
    await page.waitForURL(/\/\?$/);
    expect(await page.locator('#builds').getAttribute('data-window')).to.equal('24h');
    expect(await page.locator('#builds tbody[data-job-type="linux64-opt"] tr[data-side="new"] .verdict').innerText()).to.equal('worse — move back');
    await context.close();
  });
});
