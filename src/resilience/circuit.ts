/**
 * Passive failure detection per backend: `circuit.failureThreshold` failures
 * in a row open the circuit for `circuit.coolDownMs`; then one trial request
 * is let through (half-open): it closes the circuit if it succeeds and opens
 * it again if it fails. While open, nothing is sent to the backend, so a
 * request refused by the breaker provably never reached it.
 */
import { EventEmitter } from 'node:events';
import type { Backend } from '../routing/table.js';

export type CircuitState = 'closed' | 'open' | 'half-open';

interface Circuit {
  state: CircuitState;
  failures: number;
  openUntil: number;
  trialInFlight: boolean;
}

export class CircuitBreakers extends EventEmitter<{ change: [backend: string, state: CircuitState] }> {
  private readonly circuits = new Map<string, Circuit>();

  constructor(private readonly now: () => number = Date.now) {
    super();
  }

  state(backend: string): CircuitState {
    return this.circuits.get(backend)?.state ?? 'closed';
  }

  /** Whole seconds until an open circuit lets a trial request through. */
  retryAfterSeconds(backend: string): number {
    const circuit = this.circuits.get(backend);
    return circuit ? Math.max(1, Math.ceil((circuit.openUntil - this.now()) / 1000)) : 1;
  }

  /** May a request be sent to this backend now? Takes the half-open trial slot when it grants one. */
  allow(backend: Backend): boolean {
    const circuit = this.circuits.get(backend.name);
    if (!circuit || circuit.state === 'closed') return true;
    if (circuit.state === 'open') {
      if (this.now() < circuit.openUntil) return false;
      this.set(backend.name, circuit, 'half-open');
    }
    if (circuit.trialInFlight) return false;
    circuit.trialInFlight = true;
    return true;
  }

  succeeded(backend: Backend): void {
    const circuit = this.circuits.get(backend.name);
    if (!circuit) return;
    circuit.failures = 0;
    circuit.trialInFlight = false;
    if (circuit.state !== 'closed') this.set(backend.name, circuit, 'closed');
  }

  failed(backend: Backend): void {
    const { failureThreshold, coolDownMs } = backend.circuit;
    if (failureThreshold === 0) return;
    let circuit = this.circuits.get(backend.name);
    if (!circuit) {
      circuit = { state: 'closed', failures: 0, openUntil: 0, trialInFlight: false };
      this.circuits.set(backend.name, circuit);
    }
    circuit.failures++;
    circuit.trialInFlight = false;
    if (circuit.state === 'half-open' || (circuit.state === 'closed' && circuit.failures >= failureThreshold)) {
      circuit.openUntil = this.now() + coolDownMs;
      this.set(backend.name, circuit, 'open');
    }
  }

  /** Forgets backends no longer configured. */
  retainOnly(names: Iterable<string>): void {
    const keep = new Set(names);
    for (const name of this.circuits.keys()) if (!keep.has(name)) this.circuits.delete(name);
  }

  private set(name: string, circuit: Circuit, state: CircuitState): void {
    circuit.state = state;
    this.emit('change', name, state);
  }
}
