import { expect } from 'chai';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { dockerNodeFlags, productionNodeFlags } from '../../../bench/lib/production.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

describe('bench/lib/production: how production starts the proxy', () => {
  it('npm start and the Docker image run node with the same flags, which the bench uses', () => {
    const flags = productionNodeFlags(REPO);
    expect(flags).to.include('--min-semi-space-size=16'); // docs/performance.md: the download after a quiet spell
    expect(flags).to.include('--heap-growing-percent=50'); // docs/performance.md: memory over 1M requests
    expect(dockerNodeFlags(REPO)).to.deep.equal(flags);
  });
});
