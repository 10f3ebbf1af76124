import { expect } from 'chai';
import http from 'node:http';
import { parseConfig } from '../../../src/config/load.js';
import { HealthMonitor } from '../../../src/resilience/health.js';
import { Upstream } from '../../../src/upstream/upstream.js';
import { closeServer, listen } from '../../support/servers.js';

describe('resilience/health', () => {
  it('reads a probe answer of any size to its end and judges it by its status alone', async () => {
    const big = Buffer.alloc(3 * 1024 * 1024, 'x');
    const server = http.createServer((req, res) => res.writeHead(req.url === '/down' ? 503 : 200).end(big));
    const port = await listen(server);
    const upstream = new Upstream();
    const health = new HealthMonitor(upstream);
    try {
      const yaml = `backends:\n  up: { url: http://127.0.0.1:${port}, legacy: true, health: { path: /up, intervalMs: 50, healthyThreshold: 1, unhealthyThreshold: 1 } }\n  down: { url: http://127.0.0.1:${port}, health: { path: /down, intervalMs: 50, healthyThreshold: 1, unhealthyThreshold: 1 } }\n`;
      health.follow(parseConfig(Buffer.from(yaml), 'routes.yaml'));
      for (let i = 0; i < 100 && (health.state('up')?.up === undefined || health.state('down')?.up === undefined); i++) await new Promise((r) => setTimeout(r, 20));
      expect([health.state('up')?.up, health.state('down')?.up, health.isDown('down')]).to.deep.equal([true, false, true]);
      expect(health.state('down')?.lastError).to.equal('answered 503');
    } finally {
      health.close();
      await upstream.close();
      await closeServer(server);
    }
  });
});
