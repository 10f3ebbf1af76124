import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { ERROR_CODES, StranglerError } from '../../src/errors.js';

describe('errors', () => {
  it('documents every error code in docs/errors.md', () => {
    const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
    for (const code of Object.keys(ERROR_CODES)) expect(doc, code).to.contain(`\`${code}\``);
  });

  it('carries code, status and frozen details', () => {
    const error = new StranglerError('BACKEND_TIMEOUT', 'slow', { details: { backend: 'b' } });
    expect([error.code, error.status, error.details.backend]).to.deep.equal(['BACKEND_TIMEOUT', 504, 'b']);
    expect(Object.isFrozen(error.details)).to.equal(true);
  });
});
