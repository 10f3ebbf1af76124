/**
 * The events a Buildbot 3.7 master would produce for queue work: keys from
 * its data API's `eventPathPatterns`, messages with the key sets its events
 * carry (captured from a real 3.7 master's /ws: see test/e2e/live-events.test.ts
 * for the comparison with a live one), and the order and moments of a task's
 * life replayed from two looks at its status.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { buildsetCompleteEvent, buildsetNewEvent, eventsOfStatus, moments, newTaskEvent, type LiveEvent } from '../../../src/live/events.js';
import type { QueueRun, ReasonCreated } from '../../../src/taskcluster/queue-types.js';
import { CANCELLED, EXCEPTION, FAILURE, RETRY, SUCCESS } from '../../../src/taskcluster/results.js';
import { BRID, BSID, BUILDERID, BUILDID, buildRecord, buildset, pending, resolved, running, S0, statusOf, task } from '../../support/queue-work.js';

// Key sets of a real Buildbot 3.7 master's /ws messages (builds/*/new, buildrequests/*/claimed, buildsets/*/new, buildsets/*/complete).
const EVENT_KEYS = {
  build: ['builderid', 'buildid', 'buildrequestid', 'complete', 'complete_at', 'masterid', 'number', 'properties', 'results', 'started_at', 'state_string', 'workerid'],
  buildrequest: ['builderid', 'buildrequestid', 'buildsetid', 'claimed', 'claimed_at', 'claimed_by_masterid', 'complete', 'complete_at', 'priority', 'properties', 'results', 'submitted_at', 'waited_for'],
  buildsetNew: ['bsid', 'complete', 'complete_at', 'external_idstring', 'reason', 'results', 'scheduler', 'sourcestamps', 'submitted_at'],
  buildsetComplete: ['bsid', 'complete', 'complete_at', 'external_idstring', 'reason', 'results', 'sourcestamps', 'submitted_at'],
};

/** Each event as its keys and the fields a web UI reads. */
const summary = (events: LiveEvent[]) => events.map((e) => e.keys.map((k) => k.join('/')).join(' '));
const message = (e: LiveEvent) => e.message as Record<string, unknown>;
const sorted = (o: object) => Object.keys(o).sort();

describe('live/events', () => {
  it('a build starting: the request is claimed, then the build is new, under every key Buildbot uses but the worker\'s', () => {
    const { events, requestCompleted } = eventsOfStatus(task(), statusOf([pending(0)]), statusOf([running(0)]), [buildRecord(0)]);
    expect(summary(events)).to.deep.equal([
      `buildsets/${BSID}/builders/${BUILDERID}/buildrequests/${BRID}/claimed buildrequests/${BRID}/claimed builders/${BUILDERID}/buildrequests/${BRID}/claimed`,
      `builders/${BUILDERID}/builds/100/new builds/${BUILDID}/new`,
    ]);
    expect(requestCompleted).to.equal(false);
    expect(sorted(events[0]!.message)).to.deep.equal(EVENT_KEYS.buildrequest);
    expect(message(events[0]!)).to.include({ claimed: true, claimed_at: S0 + 60, complete: false, results: -1, properties: null });
    expect(sorted(events[1]!.message)).to.deep.equal(EVENT_KEYS.build);
    expect(message(events[1]!)).to.include({ buildid: BUILDID, builderid: BUILDERID, number: 100, buildrequestid: BRID, started_at: S0 + 60, complete: false, complete_at: null, results: null, workerid: null });
    expect(message(events[1]!).properties).to.deep.equal({});
  });

  it('a build finishing: the build is finished, then the request complete, with their results', () => {
    for (const [state, reason, result] of [['completed', 'completed', SUCCESS], ['failed', 'failed', FAILURE], ['exception', 'malformed-payload', EXCEPTION], ['exception', 'canceled', CANCELLED]] as const) {
      const { events, requestCompleted } = eventsOfStatus(task(), statusOf([running(0)]), statusOf([resolved(0, state, reason)]), [buildRecord(0)]);
      expect(summary(events).map((s) => s.split(' ')[0]), reason).to.deep.equal([`builders/${BUILDERID}/builds/100/finished`, `buildsets/${BSID}/builders/${BUILDERID}/buildrequests/${BRID}/complete`]);
      expect(message(events[0]!), reason).to.include({ complete: true, complete_at: S0 + 120, results: result });
      expect(message(events[1]!), reason).to.include({ complete: true, complete_at: S0 + 120, results: result });
      expect(requestCompleted).to.equal(true);
    }
  });

  it('a build that started and finished between two looks: each moment in turn, each message as it was then', () => {
    const { events } = eventsOfStatus(task(), undefined, statusOf([resolved(0, 'completed', 'completed')]), [buildRecord(0)]);
    expect(events.map((e) => e.keys[1]!.join('/'))).to.deep.equal([`buildrequests/${BRID}/claimed`, `builds/${BUILDID}/new`, `builds/${BUILDID}/finished`, `buildrequests/${BRID}/complete`]);
    expect(message(events[0]!)).to.include({ complete: false, results: -1 });
    expect(message(events[1]!)).to.include({ complete: false, results: null, state_string: 'building' });
    expect(message(events[2]!)).to.include({ complete: true, results: SUCCESS, state_string: 'build successful' });
    expect(message(events[3]!)).to.include({ complete: true, results: SUCCESS });
  });

  it('an automatic retry: the build ends in RETRY and the request is unclaimed, then claimed again for the next build', () => {
    const lost = resolved(0, 'exception', 'claim-expired');
    const first = eventsOfStatus(task(), statusOf([running(0)]), statusOf([lost, pending(1, 'retry')]), [buildRecord(0)]);
    expect(first.events.map((e) => e.keys[1]!.join('/'))).to.deep.equal([`builds/${BUILDID}/finished`, `buildrequests/${BRID}/unclaimed`]);
    expect(message(first.events[0]!)).to.include({ results: RETRY });
    expect(message(first.events[1]!)).to.include({ claimed: false, complete: false });
    expect(first.requestCompleted).to.equal(false);

    const second = eventsOfStatus(task(), statusOf([lost, pending(1, 'retry')]), statusOf([lost, running(1, 'retry')]), [buildRecord(0), buildRecord(1)]);
    expect(second.events.map((e) => e.keys[1]!.join('/'))).to.deep.equal([`buildrequests/${BRID}/claimed`, `builds/${BUILDID + 1}/new`]);
    // The second claim is another event than the first: neither is taken for a repeat of the other.
    const firstClaim = eventsOfStatus(task(), undefined, statusOf([running(0)]), [buildRecord(0)]).events[0]!;
    expect(second.events[0]!.id).not.to.equal(firstClaim.id);
  });

  it('the whole retry between two looks: the first build ends in RETRY before the second is new', () => {
    const { events } = eventsOfStatus(task(), statusOf([pending(0)]), statusOf([resolved(0, 'exception', 'worker-shutdown'), resolved(1, 'completed', 'completed', { reasonCreated: 'retry' })]), [buildRecord(0), buildRecord(1)]);
    expect(events.map((e) => e.keys[1]!.join('/'))).to.deep.equal([
      `buildrequests/${BRID}/claimed`,
      `builds/${BUILDID}/new`,
      `builds/${BUILDID}/finished`,
      `buildrequests/${BRID}/unclaimed`,
      `buildrequests/${BRID}/claimed`,
      `builds/${BUILDID + 1}/new`,
      `builds/${BUILDID + 1}/finished`,
      `buildrequests/${BRID}/complete`,
    ]);
    expect(message(events[2]!)).to.include({ results: RETRY });
    expect(message(events[7]!)).to.include({ results: SUCCESS });
  });

  it('a request canceled before any build: claimed and completed CANCELLED (Buildbot\'s cancel claims first), no build', () => {
    const { events, requestCompleted } = eventsOfStatus(task(), statusOf([pending(0)]), statusOf([resolved(0, 'exception', 'canceled', { started: false })]), []);
    expect(events.map((e) => e.keys[1]!.join('/'))).to.deep.equal([`buildrequests/${BRID}/claimed`, `buildrequests/${BRID}/complete`]);
    expect(message(events[1]!)).to.include({ results: CANCELLED, complete: true });
    expect(requestCompleted).to.equal(true);
  });

  it('nothing for a status that did not change, nor for a task still pending', () => {
    const same = statusOf([running(0)]);
    expect(eventsOfStatus(task(), same, same, [buildRecord(0)]).events).to.deep.equal([]);
    expect(eventsOfStatus(task(), undefined, statusOf([pending(0)]), []).events).to.deep.equal([]);
    const done = statusOf([resolved(0, 'completed', 'completed')]);
    expect(eventsOfStatus(task(), done, done, [buildRecord(0)]).events).to.deep.equal([]);
  });

  it('over any two looks at a run sequence, every build is new once before it finishes, and each event is told once', () => {
    const runArb = fc.constantFrom('pending', 'running', 'completed', 'failed', 'exception-retried', 'exception');
    fc.assert(
      fc.property(fc.array(runArb, { minLength: 1, maxLength: 4 }), fc.nat(), (kinds, cut) => {
        const runs: QueueRun[] = kinds.map((kind, i) => {
          const created: ReasonCreated = i > 0 && kinds[i - 1] === 'exception-retried' ? 'retry' : i === 0 ? 'scheduled' : 'rerun';
          if (kind === 'pending') return pending(i, created);
          if (kind === 'running') return running(i, created);
          if (kind === 'exception-retried') return resolved(i, 'exception', 'claim-expired', { reasonCreated: created });
          return resolved(i, kind === 'exception' ? 'exception' : kind, kind === 'exception' ? 'internal-error' : kind, { reasonCreated: created });
        });
        // Only the last run may be unresolved; a status the queue could send.
        if (runs.slice(0, -1).some((r) => r.state === 'pending' || r.state === 'running')) return;
        const final = statusOf(runs);
        const builds = runs.filter((r) => r.started !== undefined).map((r) => buildRecord(r.runId));
        const middle = moments(undefined, final)[cut % moments(undefined, final).length]!.at;
        const seen = [...eventsOfStatus(task(), undefined, middle, builds).events, ...eventsOfStatus(task(), middle, final, builds).events];
        const ids = seen.map((e) => e.id);
        expect(new Set(ids).size, ids.join(' ')).to.equal(ids.length);
        for (const b of builds) {
          const at = (event: string) => ids.indexOf(`build/${b.buildid}/${event}`);
          expect(at('new'), `build ${b.runId} new`).to.be.at.least(0);
          if (final.runs[b.runId]!.resolved !== undefined) expect(at('finished'), `build ${b.runId} finished`).to.be.greaterThan(at('new'));
        }
      }),
    );
  });

  it('a task the queue confirmed: a new buildrequest, unclaimed', () => {
    const event = newTaskEvent(task());
    expect(summary([event])).to.deep.equal([`buildsets/${BSID}/builders/${BUILDERID}/buildrequests/${BRID}/new buildrequests/${BRID}/new builders/${BUILDERID}/buildrequests/${BRID}/new`]);
    expect(sorted(event.message)).to.deep.equal(EVENT_KEYS.buildrequest);
    expect(event.message).to.include({ buildrequestid: BRID, buildsetid: BSID, builderid: BUILDERID, claimed: false, complete: false, results: -1, submitted_at: S0 });
  });

  it('buildsets: Buildbot\'s own new and complete messages (not the REST object), complete only once every request is', () => {
    const created = buildsetNewEvent(buildset);
    expect(created.keys).to.deep.equal([['buildsets', String(BSID), 'new']]);
    expect(sorted(created.message)).to.deep.equal(EVENT_KEYS.buildsetNew);
    expect(created.message).to.include({ bsid: BSID, complete: false, complete_at: null, results: null, scheduler: null, submitted_at: S0 });

    const other = task({ taskId: 'other', buildrequestId: BRID + 1 });
    const done = statusOf([resolved(0, 'failed', 'failed')]);
    expect(buildsetCompleteEvent(buildset, [{ task: task(), status: done }, { task: other, status: statusOf([running(0)]) }])).to.equal(undefined);
    const complete = buildsetCompleteEvent(buildset, [{ task: task(), status: done }, { task: other, status: statusOf([resolved(0, 'completed', 'completed')]) }])!;
    expect(complete.keys).to.deep.equal([['buildsets', String(BSID), 'complete']]);
    expect(sorted(complete.message)).to.deep.equal(EVENT_KEYS.buildsetComplete);
    expect(complete.message).to.include({ bsid: BSID, complete: true, complete_at: S0 + 120, results: FAILURE });
  });
});
