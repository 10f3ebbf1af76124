/**
 * A stand-in for Taskcluster's Queue v1 (the subset the proxy uses), with a
 * built-in worker and a handle for tests. See docs/standin-queue.md.
 */
export { startStandinQueue, DEFAULT_ANONYMOUS_SCOPES } from './server.js';
export type { StandinQueue, StandinQueueOptions, StandinTask } from './server.js';
export type { Faults, CreateCall } from './faults.js';
export type { WorkerOptions, WorkerOutcome } from './worker.js';
export { LIVE_LOG, LIVE_BACKING_LOG } from './worker.js';
export type { StandinClient } from './auth.js';
