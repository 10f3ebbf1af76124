/** Routing tables for tests, built through the real loader from YAML text. */
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
