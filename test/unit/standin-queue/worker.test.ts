import { expect } from 'chai';
import { requestedOutcome, seededRandom } from '../../../src/standin-queue/worker.js';
import { FaultSwitch } from '../../../src/standin-queue/faults.js';

describe('standin-queue/worker', () => {
  it('reads the outcome a payload asks for, per run, the last one repeating', () => {
    expect(requestedOutcome({ outcome: 'failure' }, 0)).to.equal('failure');
    expect(requestedOutcome({ outcome: ['intermittent', 'success'] }, 0)).to.equal('intermittent');
    expect(requestedOutcome({ outcome: ['intermittent', 'success'] }, 5)).to.equal('success');
    expect(requestedOutcome({ exitCode: 3 }, 0)).to.deep.equal({ exitCode: 3 });
    expect(requestedOutcome({ outcome: 'nonsense' }, 0)).to.equal(undefined);
    expect(requestedOutcome({}, 0)).to.equal(undefined);
  });

  it('draws the same sequence from the same seed', () => {
    const a = seededRandom(42);
    const b = seededRandom(42);
    const xs = Array.from({ length: 5 }, () => a());
    expect(Array.from({ length: 5 }, () => b())).to.deep.equal(xs);
    expect(xs.every((x) => x >= 0 && x < 1)).to.equal(true);
    expect(seededRandom(43)()).to.not.equal(xs[0]);
  });
});

describe('standin-queue/faults', () => {
  it('merges fields, counts uses down, and refuses unknown or ill-typed faults', () => {
    const f = new FaultSwitch();
    f.set({ failCreatesAfter: 2 });
    f.set({ workerPaused: true });
    expect(f.get()).to.include({ failCreatesAfter: 2, workerPaused: true });
    expect(f.take('failCreatesAfter')).to.equal(true);
    expect(f.take('failCreatesAfter')).to.equal(true);
    expect(f.take('failCreatesAfter')).to.equal(false);
    expect(() => f.set({ nope: 1 } as never)).to.throw(/unknown fault "nope"/);
    expect(() => f.set({ createDelayMs: -1 })).to.throw(/whole number/);
    expect(() => f.set({ workerPaused: 'yes' } as never)).to.throw(/true or false/);
    expect(f.reset()).to.include({ failCreatesAfter: 0, workerPaused: false });
  });
});
