import { expect } from 'chai';
import fc from 'fast-check';
import { BodyBudget } from '../../../src/ingress/body-budget.js';

type Op = { kind: 'open' } | { kind: 'reserve'; who: number; bytes: number } | { kind: 'release'; who: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.constant({ kind: 'open' as const }),
  fc.record({ kind: fc.constant('reserve' as const), who: fc.nat(20), bytes: fc.oneof(fc.nat(2_000), fc.constantFrom(0, -1, 0.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53)) }),
  fc.record({ kind: fc.constant('release' as const), who: fc.nat(20) }),
);

describe('ingress/body-budget', () => {
  it('reserves up to the limit and gives everything back on release', () => {
    const budget = new BodyBudget(100);
    const a = budget.open();
    const b = budget.open();
    expect(a.reserve(60)).to.equal(true);
    expect(b.reserve(50)).to.equal(false); // would be 110
    expect(b.reserve(40)).to.equal(true);
    expect(budget.heldBytes).to.equal(100);
    a.release();
    a.release();
    expect(budget.heldBytes).to.equal(40);
    expect(a.reserve(1)).to.equal(false); // a released request reserves nothing more
    b.release();
    expect(budget.heldBytes).to.equal(0);
  });

  it('has no cap at 0 and refuses a limit that is not a whole number of bytes', () => {
    const budget = new BodyBudget(0);
    expect(budget.open().reserve(2 ** 40)).to.equal(true);
    expect(() => new BodyBudget(-1)).to.throw(RangeError);
    expect(() => new BodyBudget(1.5)).to.throw(RangeError);
  });

  it('never leaks a reservation and never goes over its limit, whatever the order of reserves and releases (property)', () => {
    fc.assert(
      fc.property(fc.nat(5_000), fc.array(op, { maxLength: 200 }), (limit, ops) => {
        const budget = new BodyBudget(limit);
        const accounts: { account: ReturnType<BodyBudget['open']>; model: number; released: boolean }[] = [];
        let modelHeld = 0;
        for (const o of ops) {
          if (o.kind === 'open') {
            accounts.push({ account: budget.open(), model: 0, released: false });
            continue;
          }
          const a = accounts[o.who % Math.max(1, accounts.length)];
          if (a === undefined) continue;
          if (o.kind === 'reserve') {
            const valid = Number.isSafeInteger(o.bytes) && o.bytes >= 0;
            const fits = limit === 0 || modelHeld + o.bytes <= limit;
            const expected = !a.released && valid && (o.bytes === 0 || fits);
            if (a.account.reserve(o.bytes) !== expected) return false;
            if (expected) {
              a.model += o.bytes;
              modelHeld += o.bytes;
            }
          } else {
            a.account.release();
            if (!a.released) modelHeld -= a.model;
            a.model = 0;
            a.released = true;
          }
          if (budget.heldBytes !== modelHeld) return false;
          if (limit !== 0 && budget.heldBytes > limit) return false;
          if (a.account.reservedBytes !== a.model) return false;
        }
        // Every request ends, some of them seen ending twice: nothing stays reserved.
        for (const a of accounts) a.account.release();
        for (const a of accounts) a.account.release();
        return budget.heldBytes === 0;
      }),
      { numRuns: 500 },
    );
  });
});
