/**
 * The status page in a real headless Chromium (Debian's /usr/bin/chromium,
 * driven by playwright-core): it shows the migration's progress and the
 * routes of a proxy that has served traffic on both backends, follows a save
 * of routes.yaml on its own (no reload), escapes what it shows, and is
 * readable with JavaScript off. Leaves test-output/status-page.png behind.
 */
import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import request from 'supertest';
import { launchChromium, pageProblems, requireChromium } from '../support/chromium.js';
import { routesYaml, startTestProxy, type TestProxy } from '../support/proxy.js';
import { startUpstream, type TestUpstream } from '../support/upstream.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const OUTPUT = path.join(ROOT, 'test-output');
const VIEWPORT = { width: 1366, height: 768 };

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const round4 = (x: number) => Math.round(x * 10_000) / 10_000;

function routes(win32Backend: string): string {
  return `routes:
  - jobType: linux64-*
    backend: taskservice
  - jobType: android-api-16-test
    split: { taskservice: 50, buildbot: 50 }
    stickyBy: [header:X-Push-Id]
  - jobType: win32-debug
    backend: ${win32Backend}
`;
}

describe('e2e: status page in headless Chromium', function () {
  this.timeout(90_000);
  let legacy: TestUpstream;
  let next: TestUpstream;
  let t: TestProxy;
  let browser: Browser;

  before(async function () {
    requireChromium(this, 'the status page');
    mkdirSync(OUTPUT, { recursive: true });
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
  });

  beforeEach(async () => {
    legacy = await startUpstream('buildbot');
    next = await startUpstream('taskservice');
  });
  afterEach(async () => {
    await t?.close();
    await legacy.close();
    await next.close();
  });

  const yamlFor = (win32Backend: string, extra = '') => routesYaml({ buildbot: { url: legacy.url, legacy: true }, taskservice: { url: next.url } }, routes(win32Backend) + extra);

  /** Traffic on both backends: 6 linux64-opt (new), 4 win32-debug (old), 10 android-api-16-test (split, each side by its push id). */
  async function sendTraffic(): Promise<void> {
    for (let i = 0; i < 6; i++) await request(t.url).get('/api/v2/builders/linux64-opt/builds').expect(200);
    for (let i = 0; i < 4; i++) await request(t.url).get('/api/v2/builders/win32-debug').expect(200);
    for (let i = 0; i < 10; i++) await request(t.url).get('/api/v2/builders/android-api-16-test').set('X-Push-Id', `push-${i}`).expect(200);
  }

  const attr = (page: Page, selector: string, name: string) => page.locator(selector).getAttribute(name);

  it('shows progress and routes, follows a saved change without a reload, escapes what it shows', async () => {
    const before = yamlFor('buildbot');
    t = await startTestProxy(before, { pollIntervalMs: 200 });
    await sendTraffic();
    expect(legacy.received.length, 'traffic on the old side').to.be.greaterThan(0);
    expect(next.received.length, 'traffic on the new side').to.be.greaterThan(0);

    const context = await browser.newContext({ viewport: VIEWPORT });
    const page = await context.newPage();
    const problems = pageProblems(page);
    const requestsElsewhere: string[] = [];
    page.on('request', (r) => {
      if (!r.url().startsWith(t.adminUrl) && !r.url().startsWith('data:')) requestsElsewhere.push(r.url());
    });
    let navigations = 0;
    page.on('framenavigated', (frame) => {
      if (frame === page.mainFrame()) navigations++;
    });

    await page.goto(`${t.adminUrl}/`);
    expect(await page.evaluate(() => document.documentElement.dataset.refresh), 'the inline script ran (CSP nonce)').to.equal('on');

    // Progress: known job types are android-api-16-test and win32-debug (exact routes) and linux64-opt (traffic);
    // the new side has linux64-opt and half of android-api-16-test: 1.5 of 3.
    expect(await attr(page, '#progress-bar', 'data-share')).to.equal('0.5');
    expect(await attr(page, '#progress-bar', 'data-total')).to.equal('3');
    const total = legacy.received.length + next.received.length;
    expect(total).to.equal(20);
    expect(Number(await attr(page, '#traffic-bar', 'data-share'))).to.equal(round4(next.received.length / total));
    expect(await page.locator('#progress-figure').textContent()).to.contain('1.5 of 3 known job types');

    // The routes table, rule by rule, with each split.
    const rows = await page.locator('#routes-table tbody tr').evaluateAll((trs) =>
      trs.map((tr) => [tr.getAttribute('data-rule'), tr.querySelector('[data-col="split"]')?.getAttribute('data-targets'), tr.querySelector('[data-col="requests"]')?.getAttribute('data-total') ?? null]),
    );
    expect(rows).to.deep.equal([
      ['linux64-*', 'taskservice=1', '6'],
      ['android-api-16-test', 'taskservice=0.5,buildbot=0.5', '10'],
      ['win32-debug', 'buildbot=1', '4'],
      ['(default)', 'buildbot=1', null],
    ]);
    expect(await page.locator('#routes-table tr[data-rule="android-api-16-test"] [data-col="sticky"]').textContent()).to.contain('header:X-Push-Id');
    // Per job type, old and new side by side.
    expect(await page.locator('#jobtypes-table tr[data-job-type="win32-debug"] td[data-backend="buildbot"][data-col="requests"]').textContent()).to.equal('4');
    expect(await page.locator('#jobtypes-table tr[data-job-type="linux64-opt"] td[data-backend="taskservice"][data-col="requests"]').textContent()).to.equal('6');
    expect(await page.locator('#backends-table tr[data-backend="taskservice"]').getAttribute('data-circuit')).to.equal('closed');
    expect(await attr(page, '#config-hash', 'data-hash')).to.equal(sha256(before));
    await page.evaluate(() => ((window as unknown as { marker: number }).marker = 42));

    // A rejected save whose error message carries markup: shown as text, never run.
    const hostile = '<img src=x onerror="window.pwned=1">';
    t.writeConfig(yamlFor('buildbot', `  - jobType: mac-opt\n    backend: '${hostile}'\n`));
    const failure = page.locator('#history li[data-result="failure"] pre.error');
    await failure.waitFor({ timeout: 15_000 });
    expect(await failure.textContent()).to.contain(`unknown backend "${hostile}"`);
    expect(await page.locator('#history img').count()).to.equal(0);
    expect(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned)).to.equal(undefined);

    // Move win32-debug to the new side and save: the page follows on its own.
    const after = yamlFor('taskservice');
    t.writeConfig(after);
    await page.waitForFunction((hash) => document.querySelector('#config-hash')?.getAttribute('data-hash') === hash, sha256(after), { timeout: 15_000, polling: 100 });
    expect(await page.locator('#routes-table tr[data-rule="win32-debug"] [data-col="split"]').getAttribute('data-targets')).to.equal('taskservice=1');
    expect(await attr(page, '#progress-bar', 'data-share')).to.equal('0.8333'); // 2.5 of 3
    const newest = page.locator('#history li').first();
    expect(await newest.getAttribute('data-result')).to.equal('success');
    expect(await newest.getAttribute('data-hash')).to.equal(sha256(after));
    expect(await newest.locator('[data-moved-job-type]').evaluateAll((lis) => lis.map((li) => li.getAttribute('data-moved-job-type')))).to.deep.equal(['win32-debug']);
    expect(await page.locator('#refresh-status').getAttribute('data-state')).to.equal('live');
    // Same document all along: updated in place, not reloaded.
    expect(await page.evaluate(() => (window as unknown as { marker?: number }).marker)).to.equal(42);
    expect(navigations).to.equal(1);

    await page.screenshot({ path: path.join(OUTPUT, 'status-page.png') });
    await page.screenshot({ path: path.join(OUTPUT, 'status-page-full.png'), fullPage: true });
    expect(problems, 'console errors (CSP violations among them)').to.deep.equal([]);
    expect(requestsElsewhere, 'requests to other hosts').to.deep.equal([]);
    await context.close();
  });

  it('renders the tables with JavaScript disabled', async () => {
    t = await startTestProxy(yamlFor('buildbot'), { pollIntervalMs: 200 });
    await sendTraffic();
    const context = await browser.newContext({ viewport: VIEWPORT, javaScriptEnabled: false });
    const page = await context.newPage();
    const res = await page.goto(`${t.adminUrl}/`);
    expect(res?.status()).to.equal(200);
    expect(await page.evaluate(() => document.documentElement.dataset.refresh)).to.equal(undefined); // (page.evaluate runs even so; the page's own script did not)
    expect(await page.locator('#routes-table tbody tr[data-rule]').count()).to.equal(4);
    expect(await page.locator('#routes-table tr[data-rule="linux64-*"] [data-col="split"]').textContent()).to.contain('taskservice');
    expect(await attr(page, '#progress-bar', 'data-share')).to.equal('0.5');
    expect(await page.locator('#progress-bar .seg').first().isVisible()).to.equal(true);
    expect(await page.locator('#jobtypes-table tr[data-job-type="linux64-opt"]').isVisible()).to.equal(true);
    expect(await page.locator('#refresh-status').textContent()).to.contain('JavaScript off');
    await page.screenshot({ path: path.join(OUTPUT, 'status-page-nojs.png') });
    await context.close();
  });
});
