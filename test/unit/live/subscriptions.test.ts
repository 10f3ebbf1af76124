/**
 * A web UI connection's subscriptions, kept as Buildbot 3.7 keeps them
 * (`www/ws.py` cmd_startConsuming / cmd_stopConsuming, `util/tuplematch.py`),
 * from frames that are request data.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { filterMatches, MAX_PATH_LENGTH, MAX_SUBSCRIPTIONS, parsePath, readFrame, Subscriptions } from '../../../src/live/subscriptions.js';

const start = (path: unknown, _id: unknown = 1) => JSON.stringify({ cmd: 'startConsuming', path, _id });
const stop = (path: unknown, _id: unknown = 2) => JSON.stringify({ cmd: 'stopConsuming', path, _id });

describe('live/subscriptions', () => {
  describe('filterMatches (Buildbot\'s matchTuple)', () => {
    const cases: Array<[string, string, boolean]> = [
      ['builds/*/*', 'builds/1000000000000042/new', true],
      ['builds/*/*', 'builds/7/finished', true],
      ['builds/*/new', 'builds/7/finished', false],
      ['builds/7/*', 'builds/7/finished', true],
      ['builds/7/*', 'builds/8/finished', false],
      // Same number of segments or nothing: a wildcard is one segment, never several.
      ['builds/*/*', 'builders/3/builds/12/new', false],
      ['builds/*', 'builds/7/new', false],
      ['builders/*/builds/*/*', 'builders/3/builds/12/new', true],
      ['buildrequests/*/*', 'buildrequests/11/claimed', true],
      ['*/*/*', 'buildsets/5/complete', true],
      // Only a whole `*` segment is a wildcard.
      ['builds/7*/*', 'builds/71/new', false],
      ['builds/7*/*', 'builds/7*/new', true],
      ['', '', true],
    ];
    for (const [path, key, expected] of cases) {
      it(`${path || '(empty)'} ${expected ? 'matches' : 'does not match'} ${key || '(empty)'}`, () => {
        expect(filterMatches(parsePath(path), key.split('/'))).to.equal(expected);
      });
    }

    it('a path without wildcards matches exactly its own key, and `*` everywhere matches every key of its length', () => {
      const segment = fc.stringMatching(/^[a-z0-9]{1,6}$/);
      fc.assert(
        fc.property(fc.array(segment, { minLength: 1, maxLength: 6 }), fc.array(segment, { minLength: 1, maxLength: 6 }), (a, b) => {
          expect(filterMatches(parsePath(a.join('/')), b)).to.equal(a.join('/') === b.join('/'));
          expect(filterMatches(parsePath(a.map(() => '*').join('/')), b)).to.equal(a.length === b.length);
        }),
      );
    });
  });

  describe('readFrame', () => {
    it('reads Buildbot\'s own protocol and tells GraphQL frames apart', () => {
      expect(readFrame(start('builds/*/*'))).to.deep.equal({ protocol: 'buildbot', cmd: 'startConsuming', path: 'builds/*/*' });
      expect(readFrame(stop('builds/*/*'))).to.deep.equal({ protocol: 'buildbot', cmd: 'stopConsuming', path: 'builds/*/*' });
      expect(readFrame(JSON.stringify({ cmd: 'ping', _id: 3 }))).to.deep.equal({ protocol: 'buildbot' });
      expect(readFrame(JSON.stringify({ type: 'start', id: '1', payload: { query: '{builds{buildid}}' } }))).to.deep.equal({ protocol: 'graphql' });
    });

    it('takes nothing from garbage, and never throws on it', () => {
      for (const text of ['', 'garbage', '{', 'null', '[]', '42', '"builds/*/*"', JSON.stringify({ cmd: 'startConsuming', path: 'builds/*/*' }), start(['builds', '*']), start(null), start({ toString: 'x' }), start('x', null), '{"__proto__": {"path": "builds/*/*"}, "_id": 1, "cmd": "startConsuming"}']) {
        const frame = readFrame(text);
        expect(frame === undefined || !('path' in frame), text).to.equal(true);
      }
      fc.assert(fc.property(fc.string({ maxLength: 200 }), (text) => void readFrame(text)));
      fc.assert(fc.property(fc.json(), (text) => void readFrame(text)));
    });
  });

  describe('Subscriptions', () => {
    it('starts and stops by path, as the master does, and counts each matching subscription', () => {
      const subs = new Subscriptions();
      expect(subs.apply(start('builds/*/*'))).to.equal('started');
      expect(subs.apply(start('builds/*/*', 9))).to.equal('ignored'); // already consumed: Buildbot acks and keeps one
      expect(subs.apply(start('builds/42/*'))).to.equal('started');
      expect(subs.count(['builds', '42', 'new'])).to.equal(2);
      expect(subs.count(['builds', '43', 'new'])).to.equal(1);
      expect(subs.count(['buildrequests', '43', 'new'])).to.equal(0);
      expect(subs.apply(stop('builds/*/*'))).to.equal('stopped');
      expect(subs.apply(stop('builds/*/*'))).to.equal('ignored'); // the master answers "path was not consumed"
      expect(subs.count(['builds', '43', 'new'])).to.equal(0);
      expect(subs.count(['builds', '42', 'new'])).to.equal(1);
      expect(subs.size).to.equal(1);
    });

    it('ignores pings, other commands and frames that are not commands', () => {
      const subs = new Subscriptions();
      for (const text of [JSON.stringify({ cmd: 'ping', _id: 1 }), 'garbage', start(7), JSON.stringify({ cmd: 'bogus', _id: 1, path: 'x' })]) expect(subs.apply(text), text).to.equal('ignored');
      expect(subs.size).to.equal(0);
    });

    it('keeps a connection in the protocol of its first frame, as Buildbot does: a GraphQL connection gets nothing injected', () => {
      const graphql = new Subscriptions();
      graphql.apply(JSON.stringify({ type: 'connection_init' }));
      expect(graphql.apply(start('builds/*/*'))).to.equal('ignored'); // the master refuses it: "using 'type' ... already started using buildbot protocol"
      expect(graphql.count(['builds', '1', 'new'])).to.equal(0);

      const buildbot = new Subscriptions();
      buildbot.apply(start('builds/*/*'));
      buildbot.apply(JSON.stringify({ type: 'start', id: '1' }));
      expect(buildbot.apply(start('buildrequests/*/*'))).to.equal('started');
    });

    it('bounds what one client can make it hold', () => {
      const subs = new Subscriptions();
      for (let i = 0; i < MAX_SUBSCRIPTIONS + 50; i++) subs.apply(start(`builds/${i}/*`));
      expect(subs.size).to.equal(MAX_SUBSCRIPTIONS);
      expect(subs.count(['builds', String(MAX_SUBSCRIPTIONS + 10), 'new'])).to.equal(0);
      const fresh = new Subscriptions();
      expect(fresh.apply(start(`builds/${'9'.repeat(MAX_PATH_LENGTH)}/*`))).to.equal('ignored');
      expect(fresh.size).to.equal(0);
    });
  });
});
