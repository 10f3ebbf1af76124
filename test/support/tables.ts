/** Routing tables for tests, built through the real loader from YAML text, and the YAML of the common ones. */
import { parseConfig } from '../../src/config/load.js';
import type { RoutingTable } from '../../src/routing/table.js';

export const TWO_BACKENDS = `backends:
  buildbot: { url: http://127.0.0.1:8011, legacy: true }
  taskservice: { url: http://127.0.0.1:8012 }
`;

export function tableFrom(yaml: string): RoutingTable {
  return parseConfig(Buffer.from(yaml), 'test.yaml');
}

/** TWO_BACKENDS plus routes given as [jobType, backend-or-split] pairs. */
export function tableWithRoutes(routes: Array<[string, string | Record<string, number>]>, extra = ''): RoutingTable {
  const lines = routes.map(([jobType, to]) =>
    typeof to === 'string'
      ? `  - jobType: ${JSON.stringify(jobType)}\n    backend: ${to}`
      : `  - jobType: ${JSON.stringify(jobType)}\n    split: ${JSON.stringify(to)}`,
  );
  return tableFrom(`${TWO_BACKENDS}${extra}routes:\n${lines.join('\n')}\n`);
}

export interface LegacyAndQueue {
  legacyUrl: string;
  rootUrl: string;
  /** The queue backend's `task`, in YAML flow style: `{ taskQueueId: ..., payload: { ... } }`. */
  task: string;
  /** More keys of the queue backend, each a YAML line (e.g. `health: { intervalMs: 0 }`). */
  queue?: string[];
  /** More backends, as YAML lines indented under `backends:`. */
  backends?: string;
  /** The items of `routes:`, as YAML lines; by default every linux64-* job type to the queue. */
  routes?: string;
}

/** The routes file of a legacy master `buildbot` and a Taskcluster queue `queue` (so named in every such test). */
export function legacyAndQueueYaml(o: LegacyAndQueue): string {
  return `backends:
  buildbot: { url: ${o.legacyUrl}, legacy: true }
  queue:
    kind: taskcluster
    rootUrl: ${o.rootUrl}
${(o.queue ?? []).map((line) => `    ${line}\n`).join('')}    task: ${o.task}
${o.backends ?? ''}routes:
${o.routes ?? '  - jobType: linux64-*\n    backend: queue\n'}`;
}
