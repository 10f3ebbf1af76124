/** Large routes files: parsed in a worker thread, compiled on the main thread in slices. */
import { expect } from 'chai';
import { parseConfig } from '../../../src/config/load.js';
import { OFF_THREAD_MIN_BYTES, parseConfigOffThread } from '../../../src/config/off-thread.js';
import { isStranglerError, StranglerError } from '../../../src/errors.js';
import { matchRoute, type RoutingTable } from '../../../src/routing/table.js';
import { TWO_BACKENDS } from '../../support/tables.js';

/** A valid file of `count` routes of every kind, well above the size parsed on the main thread. */
function largeFile(count: number): string {
  const lines = [TWO_BACKENDS.trimEnd(), 'default: buildbot', 'settings: { bodyPeekLimitBytes: 2048, shadow: { maxInFlight: 3 } }', 'routes:'];
  for (let i = 0; i < count; i++) {
    if (i % 100 === 1) lines.push(`  - jobType: "/^re-${i}-(opt|debug)$/i"`, '    split: { taskservice: 1, buildbot: 3 }', '    stickyBy: [header:X-Push-Id]');
    else if (i % 100 === 2) lines.push(`  - jobType: "glob-${i}-*"`, '    backend: taskservice', '    shadow: { backend: buildbot, percent: 5, ignoreFields: [id] }', '    fallback: buildbot', '    retries: 2');
    else lines.push(`  - jobType: job-${i}`, `    backend: ${i % 2 ? 'taskservice' : 'buildbot'}`);
  }
  return lines.join('\n') + '\n';
}

/** Everything about a table that a request or a person can see, functions aside. */
function visible(table: RoutingTable) {
  return {
    backends: [...table.backends.values()],
    legacy: table.legacy.name,
    defaultBackend: table.defaultBackend.name,
    settings: table.settings,
    source: table.source,
    routes: table.routes.map(({ test, shadow, ...route }) => ({ ...route, hasTest: test !== undefined, shadow: shadow && { ...shadow, ignoreFields: [...shadow.ignoreFields] } })),
    exact: [...table.exactRoutes.keys()],
    patterns: table.patternRoutes.map((r) => r.index),
  };
}

describe('config/off-thread: parseConfigOffThread', function () {
  this.timeout(60_000); // starting a worker from the TypeScript sources takes a while

  it('builds the same table as parseConfig, matchers included', async () => {
    const text = largeFile(3000);
    expect(text.length).to.be.greaterThan(OFF_THREAD_MIN_BYTES);
    const at = new Date(1_000_000);
    const here = parseConfig(Buffer.from(text), 'routes.yaml', at);
    const there = await parseConfigOffThread(Buffer.from(text), 'routes.yaml', at);
    expect(visible(there)).to.deep.equal(visible(here));
    expect(Object.isFrozen(there)).to.equal(true);
    for (const name of ['job-4', 'RE-101-OPT', 're-101-debug', 'glob-202-x', 'glob-202', 'nothing']) {
      expect(matchRoute(there, name)?.index, name).to.equal(matchRoute(here, name)?.index);
    }
  });

  it('rejects an invalid file with the same located message as parseConfig', async () => {
    const text = largeFile(1000).replace('backend: taskservice', 'backend: nowhere').replace('jobType: job-7\n', 'jobType: "/(?=x)/"\n');
    let expected = '';
    try {
      parseConfig(Buffer.from(text), 'routes.yaml');
    } catch (error) {
      expected = (error as Error).message;
    }
    expect(expected).to.match(/^routes\.yaml: 2 problems:\n {2}routes\.yaml:\d+:\d+: /);
    try {
      await parseConfigOffThread(Buffer.from(text), 'routes.yaml', new Date());
      expect.fail('accepted');
    } catch (error) {
      expect(isStranglerError(error, 'CONFIG_INVALID'), String(error)).to.equal(true);
      expect((error as StranglerError).message).to.equal(expected);
      expect((error as StranglerError).details.problems).to.have.length(2);
    }
  });

  it('stops when aborted, rejecting with the reason', async () => {
    const controller = new AbortController();
    const parsing = parseConfigOffThread(Buffer.from(largeFile(20_000)), 'routes.yaml', new Date(), { signal: controller.signal });
    setTimeout(() => controller.abort(new StranglerError('CONFIG_UNREADABLE', 'closed')), 50);
    try {
      await parsing;
      expect.fail('finished');
    } catch (error) {
      expect((error as Error).message).to.equal('closed');
    }
  });
});
