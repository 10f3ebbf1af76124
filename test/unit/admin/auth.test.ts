import { expect } from 'chai';
import { createHash, timingSafeEqual } from 'node:crypto';
import { bearerToken, checkToken, tokensMatch } from '../../../src/admin/auth.js';

describe('admin/auth', () => {
  describe('tokensMatch', () => {
    it('is true for equal tokens only', () => {
      expect(tokensMatch('s3cret-token-value', 's3cret-token-value')).to.equal(true);
      expect(tokensMatch('s3cret-token-value', 's3cret-token-valuf')).to.equal(false);
      expect(tokensMatch('S3cret-token-value', 's3cret-token-value')).to.equal(false);
      expect(tokensMatch('ünïcødé-tøken', 'ünïcødé-tøken')).to.equal(true);
      expect(tokensMatch('ünïcødé-tøken', 'unicode-token')).to.equal(false);
    });

    it('compares tokens of different lengths without throwing (timingSafeEqual alone would throw on them)', () => {
      for (const [a, b] of [
        ['short', 'a-much-longer-token-than-the-other-one'],
        ['', 'token'],
        ['token', ''],
        ['token', 'token\u0000'],
        ['x'.repeat(10_000), 'x'],
      ] as const) {
        expect(() => tokensMatch(a, b), `${a.length} vs ${b.length}`).not.to.throw();
        expect(tokensMatch(a, b)).to.equal(false);
      }
    });

    it('is built on crypto.timingSafeEqual over fixed-length SHA-256 digests (by construction, not by timing)', () => {
      // Watch the comparison: whatever the tokens' lengths, it gets two 32-byte digests, once, and its answer is the answer.
      for (const [given, expected] of [
        ['short', 'a-much-longer-token-than-the-other-one'],
        ['same-token', 'same-token'],
        ['', 'x'.repeat(10_000)],
      ] as const) {
        const calls: Array<[Buffer, Buffer]> = [];
        const spy = (a: Buffer, b: Buffer) => {
          calls.push([a, b]);
          return timingSafeEqual(a, b);
        };
        const result = tokensMatch(given, expected, spy);
        expect(calls).to.have.length(1);
        expect(calls[0]!.map((d) => d.length)).to.deep.equal([32, 32]);
        expect(calls[0]![0].equals(createHash('sha256').update(given).digest())).to.equal(true);
        expect(calls[0]![1].equals(createHash('sha256').update(expected).digest())).to.equal(true);
        expect(result).to.equal(given === expected);
        expect(tokensMatch(given, expected, () => true), 'no short cut around the comparison').to.equal(true);
      }
      // And the comparison it uses when not watched is crypto.timingSafeEqual: named once in the function, with no
      // length or content test beside it that could return early.
      const source = tokensMatch.toString();
      expect(source.match(/timingSafeEqual/g)).to.have.length(1);
      expect(source.match(/sha256/g)).to.have.length(2);
      expect(source).not.to.match(/\.length|===|!==|==|startsWith|return false/);
    });
  });

  describe('bearerToken', () => {
    it('reads "Bearer <token>", the scheme in any case', () => {
      expect(bearerToken('Bearer abc.def-123')).to.equal('abc.def-123');
      expect(bearerToken('bearer abc')).to.equal('abc');
      expect(bearerToken('BEARER   abc  ')).to.equal('abc');
    });

    it('refuses anything else', () => {
      for (const header of [undefined, '', 'Bearer', 'Bearer ', 'Basic abc', 'Bearerabc', 'Bearer a b', 'Token abc']) {
        expect(bearerToken(header), String(header)).to.equal(undefined);
      }
    });
  });

  describe('checkToken', () => {
    const token = 'the-admin-token-0123456789';

    it('disables writes (403) when no token is configured, saying how to enable them', () => {
      for (const configured of [undefined, '']) {
        const check = checkToken({ token: configured, protectReads: false }, 'write', `Bearer ${token}`);
        expect(check).to.deep.include({ ok: false, status: 403, code: 'ADMIN_DISABLED' });
        expect(check.ok === false && check.message).to.contain('STRANGLER_ADMIN_TOKEN');
      }
    });

    it('lets reads through unless they are protected; protected reads without a token configured fail closed', () => {
      expect(checkToken({ token: undefined, protectReads: false }, 'read', undefined)).to.deep.equal({ ok: true });
      expect(checkToken({ token, protectReads: false }, 'read', undefined)).to.deep.equal({ ok: true });
      expect(checkToken({ token: undefined, protectReads: true }, 'read', `Bearer ${token}`)).to.deep.include({ ok: false, status: 403 });
      expect(checkToken({ token, protectReads: true }, 'read', undefined)).to.deep.include({ ok: false, status: 401 });
      expect(checkToken({ token, protectReads: true }, 'read', `Bearer ${token}`)).to.deep.equal({ ok: true });
    });

    it('answers 401 with a WWW-Authenticate challenge for a missing, malformed or wrong token, without repeating it', () => {
      const auth = { token, protectReads: false };
      const missing = checkToken(auth, 'write', undefined);
      expect(missing).to.deep.include({ ok: false, status: 401, code: 'ADMIN_UNAUTHORIZED', wwwAuthenticate: 'Bearer realm="strangler-admin"' });
      expect(checkToken(auth, 'write', `Basic ${token}`)).to.deep.include({ status: 401 });
      const wrong = checkToken(auth, 'write', 'Bearer not-the-token');
      expect(wrong).to.deep.include({ status: 401, wwwAuthenticate: 'Bearer realm="strangler-admin", error="invalid_token"' });
      for (const check of [missing, wrong]) {
        expect(JSON.stringify(check)).not.to.contain(token);
        expect(JSON.stringify(check)).not.to.contain('not-the-token');
        expect(check.ok === false && check.message).to.contain('Authorization: Bearer <token>');
      }
      expect(checkToken(auth, 'write', `Bearer ${token}`)).to.deep.equal({ ok: true });
    });
  });
});
