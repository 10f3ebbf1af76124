/**
 * Faults a test can switch on in a running stand-in, to see what a client does
 * when the queue misbehaves around createTask, and the record of every
 * createTask call that tests count.
 */

export interface Faults {
  /** Answer createTask this many ms after the task is created (the task exists meanwhile). */
  createDelayMs: number;
  /**
   * Hold each createTask this many ms before processing it. A request whose
   * client has gone meanwhile is dropped unprocessed, as a PUT lost before the
   * queue read it: nothing is created and nothing is answered.
   */
  createDelayBeforeMs: number;
  /** Answer the next N createTask calls 500 before anything is created. */
  failCreatesBefore: number;
  /** Answer the next N createTask calls 500 after the task is created. */
  failCreatesAfter: number;
  /** Destroy the connection of the next N createTask calls after the task is created, answering nothing. */
  dropCreatesAfter: number;
  /** Stop the built-in worker from claiming; runs already claimed finish. */
  workerPaused: boolean;
}

export const NO_FAULTS: Readonly<Faults> = Object.freeze({
  createDelayMs: 0,
  createDelayBeforeMs: 0,
  failCreatesBefore: 0,
  failCreatesAfter: 0,
  dropCreatesAfter: 0,
  workerPaused: false,
});

export interface CreateCall {
  taskId: string;
  /** Whether this call stored a new task (false for an idempotent resend, a refusal or a fault before creating). */
  created: boolean;
  /** The HTTP status answered, or 0 when the connection was dropped. */
  status: number;
  /** Which fault, if any, shaped the answer. */
  fault?: 'fail-before' | 'fail-after' | 'drop-after' | 'delay' | 'delay-before' | 'lost-before';
  at: string;
  /** The request body as received, so a test can check that every send of one taskId was identical. */
  body?: string;
}

export class FaultSwitch {
  private current: Faults = { ...NO_FAULTS };

  get(): Faults {
    return { ...this.current };
  }

  /**
   * Merges the given fields into the current faults.
   *
   * @example faults.set({ failCreatesAfter: 1 }) // the next createTask creates, then answers 500
   */
  set(partial: Partial<Faults>): Faults {
    const next = { ...this.current };
    for (const [k, v] of Object.entries(partial) as Array<[keyof Faults, unknown]>) {
      if (!(k in NO_FAULTS)) throw new Error(`unknown fault "${k}"; known: ${Object.keys(NO_FAULTS).join(', ')}`);
      if (k === 'workerPaused') {
        if (typeof v !== 'boolean') throw new Error(`fault "workerPaused" must be true or false, got ${JSON.stringify(v)}`);
        next.workerPaused = v;
      } else {
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
          throw new Error(`fault "${k}" must be a whole number >= 0, got ${JSON.stringify(v)}`);
        }
        next[k] = v;
      }
    }
    this.current = next;
    return this.get();
  }

  reset(): Faults {
    this.current = { ...NO_FAULTS };
    return this.get();
  }

  /** Takes one use of a counted fault, if any is left. */
  take(k: 'failCreatesBefore' | 'failCreatesAfter' | 'dropCreatesAfter'): boolean {
    if (this.current[k] <= 0) return false;
    this.current = { ...this.current, [k]: this.current[k] - 1 };
    return true;
  }
}
