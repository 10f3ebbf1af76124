/**
 * Long work done on the event loop in slices: a step function (a generator)
 * is run until about {@link SLICE_MS} have passed, then the loop is given
 * back to requests before the next slice. Used where a large routes.yaml
 * (tens of thousands of routes) would otherwise hold every request up: its
 * compilation, and what a reload updates afterwards (history, metrics).
 */
export const SLICE_MS = 5;

/** Runs `steps` to its end in slices; resolves with its return value, or rejects with the signal's reason once aborted. */
export async function runInSlices<T>(steps: Iterator<unknown, T>, signal?: AbortSignal): Promise<T> {
  let started = performance.now();
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
    if (performance.now() - started < SLICE_MS) continue;
    await new Promise((resolve) => setImmediate(resolve));
    signal?.throwIfAborted();
    started = performance.now();
  }
}
