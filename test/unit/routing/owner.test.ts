/**
 * ownedIdIn: which paths name an object the proxy minted for queue work, so
 * the request goes to that work's owner whatever the routes say.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { namesLegacyObject, ownedFilterIn, ownedIdIn, type OwnedKind } from '../../../src/routing/owner.js';
import { decide } from '../../../src/routing/decide.js';
import { tableFrom } from '../../support/tables.js';
import { MINTED_ID_BASE, MINTED_ID_LIMIT } from '../../../src/store/store.js';

const PLURALS: Record<OwnedKind, string> = { build: 'builds', buildrequest: 'buildrequests', buildset: 'buildsets', step: 'steps', log: 'logs' };
const KINDS = Object.keys(PLURALS) as OwnedKind[];
const FIRST = MINTED_ID_BASE;

describe('routing/owner: ownedIdIn', () => {
  it('finds each kind, with the segments after the id', () => {
    expect(ownedIdIn(`/api/v2/builds/${FIRST + 7}/steps`)).to.deep.equal({ kind: 'build', id: FIRST + 7, rest: ['steps'] });
    expect(ownedIdIn(`/api/v2/buildrequests/${FIRST}`)).to.deep.equal({ kind: 'buildrequest', id: FIRST, rest: [] });
    expect(ownedIdIn(`/api/v2/buildsets/${FIRST + 1}`)).to.deep.equal({ kind: 'buildset', id: FIRST + 1, rest: [] });
    expect(ownedIdIn(`/api/v2/steps/${FIRST + 2}/logs/stdio/raw`)).to.deep.equal({ kind: 'step', id: FIRST + 2, rest: ['logs', 'stdio', 'raw'] });
    expect(ownedIdIn(`/api/v2/logs/${FIRST + 3}/contents`)).to.deep.equal({ kind: 'log', id: FIRST + 3, rest: ['contents'] });
  });

  it('drops empty segments: a trailing slash or a doubled one names the same object', () => {
    expect(ownedIdIn(`/api/v2/builds/${FIRST}/`)).to.deep.equal({ kind: 'build', id: FIRST, rest: [] });
    expect(ownedIdIn(`/api/v2/builds/${FIRST}//steps/`)).to.deep.equal({ kind: 'build', id: FIRST, rest: ['steps'] });
  });

  it('leaves the segments after the id encoded, for the reader to decode', () => {
    expect(ownedIdIn(`/api/v2/builds/${FIRST}/steps/a%2Fb`)!.rest).to.deep.equal(['steps', 'a%2Fb']);
  });

  it('takes the largest safe integer and nothing above it', () => {
    expect(ownedIdIn(`/api/v2/builds/${MINTED_ID_LIMIT}`)).to.deep.equal({ kind: 'build', id: MINTED_ID_LIMIT, rest: [] });
    expect(ownedIdIn('/api/v2/builds/9007199254740992')).to.equal(undefined);
    expect(ownedIdIn('/api/v2/builds/9999999999999999')).to.equal(undefined);
    expect(ownedIdIn('/api/v2/builds/10000000000000000')).to.equal(undefined);
  });

  it('leaves the legacy master\'s ids, and ids just below the minted range, to the routes', () => {
    expect(ownedIdIn('/api/v2/builds/12')).to.equal(undefined);
    expect(ownedIdIn(`/api/v2/buildrequests/${FIRST - 1}`)).to.equal(undefined);
    expect(ownedIdIn('/api/v2/builds/0')).to.equal(undefined);
  });

  it('reads only the id position of the five kinds under /api/v2', () => {
    for (const path of [
      `/api/v2/builders/${FIRST}`,
      `/api/v2/builders/${FIRST}/builds`,
      `/api/v2/workers/${FIRST}`,
      `/api/v2/changes/${FIRST}`,
      `/api/v2/sourcestamps/${FIRST}`,
      `/api/v1/builds/${FIRST}`,
      `/builds/${FIRST}`,
      `/api/v2/builds/${FIRST}x`,
      `/api/v2/builds/-${FIRST}`,
      `/api/v2/builds/+${FIRST}`,
      `/api/v2/builds/${FIRST}.0`,
      `/api/v2/builds/1e15`,
      `/api/v2/builds`,
      `/api/v2/builds/`,
      `/API/V2/builds/${FIRST}`,
      `/api/v2/build/${FIRST}`,
      `/x/api/v2/builds/${FIRST}`,
    ]) {
      expect(ownedIdIn(path), path).to.equal(undefined);
    }
  });

  it('never reads a zero-padded id as a minted one', () => {
    // 16 digits at most: a zero-padded minted id needs 17, so the routes decide where it goes.
    expect(ownedIdIn(`/api/v2/builds/0${FIRST}`)).to.equal(undefined);
    expect(ownedIdIn('/api/v2/builds/0000000000000012')).to.equal(undefined);
  });

  describe('property', () => {
    const kind = fc.constantFrom(...KINDS);
    const rest = fc.array(fc.stringMatching(/^[A-Za-z0-9_.%-]{1,12}$/), { maxLength: 4 });

    it('never owns an id below MINTED_ID_BASE', () => {
      fc.assert(
        fc.property(kind, fc.bigInt({ min: 0n, max: BigInt(MINTED_ID_BASE - 1) }), rest, (k, id, tail) => {
          const path = `/api/v2/${PLURALS[k]}/${id}${tail.map((s) => `/${s}`).join('')}`;
          expect(ownedIdIn(path), path).to.equal(undefined);
        }),
        { numRuns: 2000 },
      );
    });

    it('owns every id from MINTED_ID_BASE below 2^53, with its kind, the id exactly, and the rest of the path', () => {
      fc.assert(
        fc.property(kind, fc.bigInt({ min: BigInt(MINTED_ID_BASE), max: BigInt(MINTED_ID_LIMIT) }), rest, (k, big, tail) => {
          const id = Number(big);
          const path = `/api/v2/${PLURALS[k]}/${big}${tail.map((s) => `/${s}`).join('')}`;
          expect(ownedIdIn(path), path).to.deep.equal({ kind: k, id, rest: tail });
          expect(BigInt(ownedIdIn(path)!.id)).to.equal(big);
        }),
        { numRuns: 2000 },
      );
    });

    it('owns no id at or above 2^53', () => {
      fc.assert(
        fc.property(kind, fc.bigInt({ min: 2n ** 53n, max: 10n ** 20n }), (k, id) => {
          expect(ownedIdIn(`/api/v2/${PLURALS[k]}/${id}`)).to.equal(undefined);
        }),
        { numRuns: 500 },
      );
    });
  });
});

describe('routing/owner: collections filtered by a minted id', () => {
  it('reads /builds?buildrequestid=ID and /buildrequests?buildsetid=ID as below that id', () => {
    expect(ownedFilterIn('/api/v2/builds', `buildrequestid=${FIRST + 3}`)).to.deep.equal({ kind: 'buildrequest', id: FIRST + 3, rest: ['builds'] });
    expect(ownedFilterIn('/api/v2/builds', `buildrequestid__eq=${FIRST + 3}&order=-number`)).to.deep.equal({ kind: 'buildrequest', id: FIRST + 3, rest: ['builds'] });
    expect(ownedFilterIn('/api/v2/buildrequests', `buildsetid=${FIRST}`)).to.deep.equal({ kind: 'buildset', id: FIRST, rest: ['buildrequests'] });
  });

  it('leaves every other query alone: legacy ids, several values, other filters', () => {
    expect(ownedFilterIn('/api/v2/builds', 'buildrequestid=12')).to.equal(undefined);
    expect(ownedFilterIn('/api/v2/builds', `buildrequestid=${FIRST}&buildrequestid=${FIRST + 1}`)).to.equal(undefined);
    expect(ownedFilterIn('/api/v2/builds', `builderid=${FIRST}`)).to.equal(undefined);
    expect(ownedFilterIn('/api/v2/builders', `buildrequestid=${FIRST}`)).to.equal(undefined);
    expect(ownedFilterIn('/api/v2/builds', '')).to.equal(undefined);
  });
});

describe('routing/owner: objects of the legacy master', () => {
  it('knows a path naming an object by an id below the minted range', () => {
    expect(namesLegacyObject('/api/v2/builds/12')).to.equal(true);
    expect(namesLegacyObject('/api/v2/buildrequests/3/builds')).to.equal(true);
    expect(namesLegacyObject(`/api/v2/builds/${FIRST}`)).to.equal(false);
    expect(namesLegacyObject('/api/v2/builders/12/builds')).to.equal(false);
  });

  it('sends such a path to the legacy backend even when another backend is the default', () => {
    const table = tableFrom(`backends:
  buildbot: { url: http://127.0.0.1:8011, legacy: true }
  taskservice: { url: http://127.0.0.1:8012 }
default: taskservice
`);
    expect(decide(table, { legacyObject: true })).to.deep.include({ reason: 'owner' });
    expect(decide(table, { legacyObject: true }).backend.name).to.equal('buildbot');
    expect(decide(table, {}).backend.name).to.equal('taskservice');
  });
});
