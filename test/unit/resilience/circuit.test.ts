import { expect } from 'chai';
import { CircuitBreakers, type CircuitState } from '../../../src/resilience/circuit.js';
import { tableFrom } from '../../support/tables.js';

describe('proxy/circuit: CircuitBreakers', () => {
  const table = tableFrom('backends:\n  b: { url: http://127.0.0.1:1, legacy: true, circuit: { failureThreshold: 3, coolDownMs: 1000 } }\n  off: { url: http://127.0.0.1:2, circuit: { failureThreshold: 0 } }\n');
  const b = table.backends.get('b')!;
  let now = 0;
  let breakers: CircuitBreakers;
  let changes: CircuitState[];
  beforeEach(() => {
    now = 0;
    breakers = new CircuitBreakers(() => now);
    changes = [];
    breakers.on('change', (_name, state) => changes.push(state));
  });

  it('opens after the threshold of failures in a row, and a success in between resets the count', () => {
    breakers.failed(b);
    breakers.failed(b);
    breakers.succeeded(b);
    breakers.failed(b);
    breakers.failed(b);
    expect(breakers.state('b')).to.equal('closed');
    breakers.failed(b);
    expect(breakers.state('b')).to.equal('open');
    expect(breakers.allow(b)).to.equal(false);
    expect(breakers.retryAfterSeconds('b')).to.equal(1);
  });

  it('lets exactly one trial through after the cool-down; success closes, failure re-opens', () => {
    for (let i = 0; i < 3; i++) breakers.failed(b);
    now = 999;
    expect(breakers.allow(b)).to.equal(false);
    now = 1000;
    expect(breakers.allow(b)).to.equal(true);
    expect(breakers.state('b')).to.equal('half-open');
    expect(breakers.allow(b)).to.equal(false); // the trial is in flight
    breakers.failed(b);
    expect(breakers.state('b')).to.equal('open');
    now = 2000;
    expect(breakers.allow(b)).to.equal(true);
    breakers.succeeded(b);
    expect(breakers.state('b')).to.equal('closed');
    expect(breakers.allow(b)).to.equal(true);
    expect(changes).to.deep.equal(['open', 'half-open', 'open', 'half-open', 'closed']);
  });

  it('never opens with failureThreshold 0', () => {
    const off = table.backends.get('off')!;
    for (let i = 0; i < 100; i++) breakers.failed(off);
    expect(breakers.allow(off)).to.equal(true);
  });
});
