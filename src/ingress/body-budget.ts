/**
 * A cap on the request-body bytes the proxy holds in memory at once, across
 * all requests. Only bodies read whole to find builder names are held (a
 * force's, up to `settings.bodyPeekLimitBytes` each); everything else streams.
 * Without a cap, many clients declaring large forces and sending them slowly
 * would hold memory without bound.
 *
 * Each request gets a {@link BodyReservation}: a declared Content-Length is
 * reserved up front, a chunked body as its bytes arrive, and the whole
 * reservation is given back once, when the request ends, however it ends.
 *
 * @example
 *   const budget = new BodyBudget(64 * 1024 * 1024);
 *   const held = budget.open();
 *   if (!held.reserve(declaredLength)) answer503();
 *   res.once('close', () => held.release());
 */
export class BodyBudget {
  private held = 0;

  /** `limitBytes`: 0 means no cap. */
  constructor(readonly limitBytes: number) {
    if (!Number.isSafeInteger(limitBytes) || limitBytes < 0) throw new RangeError(`maxHeldBodyBytes must be a whole number of bytes >= 0, got ${limitBytes}`);
  }

  /** Bytes reserved by requests that have not ended yet. */
  get heldBytes(): number {
    return this.held;
  }

  /** A request's own account; reserves nothing until asked. */
  open(): BodyReservation {
    return new BodyReservation(this);
  }

  /** @internal Takes `bytes` if they fit. */
  take(bytes: number): boolean {
    if (this.limitBytes !== 0 && this.held + bytes > this.limitBytes) return false;
    this.held += bytes;
    return true;
  }

  /** @internal */
  giveBack(bytes: number): void {
    this.held -= bytes;
  }
}

export class BodyReservation {
  private bytes = 0;
  private released = false;

  constructor(private readonly budget: BodyBudget) {}

  /** What this request holds now. */
  get reservedBytes(): number {
    return this.bytes;
  }

  /**
   * Adds `bytes` to this request's reservation. False, and nothing taken, when
   * the budget cannot hold them or the reservation was already released (a
   * late chunk of a request that ended must not reserve what nobody returns).
   */
  reserve(bytes: number): boolean {
    if (this.released || !(bytes >= 0) || !Number.isSafeInteger(bytes)) return false;
    if (bytes === 0) return true;
    if (!this.budget.take(bytes)) return false;
    this.bytes += bytes;
    return true;
  }

  /** Gives everything back. Idempotent: the request's end may be seen more than once. */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.budget.giveBack(this.bytes);
    this.bytes = 0;
  }
}

/** The default cap: 64 force bodies of the default peek limit (1 MiB) at once. */
export const DEFAULT_MAX_HELD_BODY_BYTES = 64 * 1024 * 1024;
