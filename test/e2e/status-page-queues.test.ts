/**
 * The status page's Taskcluster queues section in a real headless Chromium (Debian's
 * /usr/bin/chromium, driven by playwright-core), with the stand-in queue, a stand-in legacy
 * master and the embedded store in a temporary folder: the queue is shown with whether its
 * credentials are set (never their values) and a forced build's task by its Buildbot ids,
 * with JavaScript on and off; a job type's link filters the section.
 */
import { expect } from 'chai';
import type { Browser } from 'playwright-core';
import { startStandinBackend, type StandinBackend } from '../../src/demo/standin.js';
import type { Strangler } from '../../src/main.js';
import { startStandinQueue, type StandinQueue } from '../../src/standin-queue/index.js';
import { BuildbotClient, forceIds } from '../support/buildbot-client.js';
import { launchChromium, pageProblems, requireChromium } from '../support/chromium.js';
import { startQueueProxy, type QueueProxy } from '../support/queue-proxy.js';
import { legacyAndQueueYaml } from '../support/tables.js';

const ACCESS_TOKEN = 'status-page-secret-access-token';

async function force(proxyUrl: string, builder: string): Promise<{ bsid: number; brid: number }> {
  const { bsid, brids } = forceIds(await new BuildbotClient(proxyUrl).force([builder], { revision: 'abc', reason: 'e2e' }));
  return { bsid, brid: [...brids.values()][0]! };
}

describe('e2e: status page, Taskcluster queues section, in headless Chromium', function () {
  this.timeout(90_000);
  let queue: StandinQueue;
  let legacy: StandinBackend;
  let world: QueueProxy;
  let proxy: Strangler;
  let browser: Browser;

  before(async function () {
    requireChromium(this, 'the queues section');
    queue = await startStandinQueue({ clients: { proxy: { accessToken: ACCESS_TOKEN, scopes: ['*'] } }, worker: { taskQueueIds: ['proj-ci/linux'], startDelayMs: 20, runMs: 50, failureRate: 0, seed: 1 } as never });
    legacy = await startStandinBackend({ name: 'buildbot', builders: ['linux64-opt', 'linux64-debug', 'win32-debug'] });
    world = await startQueueProxy(legacyAndQueueYaml({ legacyUrl: legacy.url, rootUrl: queue.rootUrl, task: `{ taskQueueId: proj-ci/linux, payload: { command: [echo, '\${builder.name}'] } }` }), {
      credentials: { clientId: 'proxy', accessToken: ACCESS_TOKEN },
      queueFollowIntervalMs: 100,
      watch: false,
    });
    proxy = world.proxy;
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await world?.close();
    await queue?.close();
    await legacy?.close();
  });

  it('shows the queue and a forced build\'s task by its Buildbot ids, live; never the credentials; a job type link filters it', async () => {
    const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
    const page = await context.newPage();
    const problems = pageProblems(page);
    await page.goto(`${proxy.adminUrl}/`);
    expect(await page.evaluate(() => document.documentElement.dataset.refresh)).to.equal('on');
    const section = page.locator('#queues');
    expect(await section.getAttribute('data-store')).to.equal('embedded');
    expect(await page.locator('#queues [data-queue="queue"] [data-col="credentials"]').getAttribute('data-set')).to.equal('true');
    expect(await page.locator('#backends-table tr[data-backend="queue"] [data-col="name"]').getAttribute('data-kind')).to.equal('taskcluster');
    expect(await section.textContent()).to.contain('no tasks yet');

    // A force after the page loaded: the refresh brings its task in, then its end.
    const opt = await force(proxy.proxyUrl, 'linux64-opt');
    const row = page.locator(`#queues tr[data-buildrequest="${opt.brid}"]`);
    await row.waitFor({ timeout: 15_000 });
    await page.locator(`#queues tr[data-buildrequest="${opt.brid}"][data-queue-state="completed"]`).waitFor({ timeout: 15_000 });
    expect(await row.locator('[data-col="buildset"]').textContent()).to.equal(String(opt.bsid));
    expect(await row.locator('[data-col="jobType"]').textContent()).to.equal('linux64-opt');
    const taskId = await row.getAttribute('data-task-id');
    expect(queue.tasks().map((t) => t.taskId)).to.include(taskId);
    const buildid = Number(await row.locator('[data-col="builds"]').textContent());
    const build = (await (await fetch(`${proxy.proxyUrl}/api/v2/builds/${buildid}`)).json()) as { builds: { buildrequestid: number }[] };
    expect(build.builds[0]!.buildrequestid, 'the build id shown reads back through the proxy').to.equal(opt.brid);

    // The job type link filters the section to that job type (the refresh keeps the filter).
    const debug = await force(proxy.proxyUrl, 'linux64-debug');
    await page.locator(`#queues tr[data-buildrequest="${debug.brid}"]`).waitFor({ timeout: 15_000 });
    await row.locator('[data-col="jobType"] a').click();
    await page.waitForURL(/\?jobType=linux64-opt$/);
    expect(await page.locator('#queues').getAttribute('data-job-type')).to.equal('linux64-opt');
    expect(await page.locator('#queues tr[data-buildrequest]').count()).to.equal(1);
    await page.waitForFunction(() => document.getElementById('refresh-status')?.textContent?.includes('updated'), undefined, { timeout: 10_000 });
    expect(await page.locator('#queues').getAttribute('data-job-type')).to.equal('linux64-opt');

    expect(await page.content()).not.to.contain(ACCESS_TOKEN);
    expect(problems).to.deep.equal([]);
    await context.close();
  });

  it('is readable with JavaScript off', async () => {
    const context = await browser.newContext({ javaScriptEnabled: false });
    const page = await context.newPage();
    await page.goto(`${proxy.adminUrl}/`);
    expect(await page.evaluate(() => document.documentElement.dataset.refresh).catch(() => undefined)).to.equal(undefined);
    const rows = page.locator('#queues tr[data-task-id]');
    expect(await rows.count()).to.be.at.least(2);
    expect(await page.locator('#queues h3').textContent()).to.contain(queue.rootUrl);
    expect(await page.locator('#queues').textContent()).to.contain('credentials set');
    await context.close();
  });
});
