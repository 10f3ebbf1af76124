import { expect } from 'chai';
import { decide } from '../../../src/routing/decide.js';
import { MATCH_CACHE_LIMIT } from '../../../src/routing/table.js';
import { tableWithRoutes } from '../../support/tables.js';

describe('routing/decide', () => {
  const table = tableWithRoutes([
    ['linux64-*', 'taskservice'],
    ['android-*', { taskservice: 50, buildbot: 50 }],
    ['win32-debug', 'buildbot'],
  ]);

  it('routes a single job type by its rule', () => {
    const d = decide(table, { jobTypes: ['linux64-opt'] });
    expect([d.backend.name, d.reason, d.jobType, d.route?.pattern]).to.deep.equal(['taskservice', 'route', 'linux64-opt', 'linux64-*']);
  });

  it('says "split" for a weighted rule and uses the draw', () => {
    expect(decide(table, { jobTypes: ['android-x'] }, 0.1)).to.include({ reason: 'split' });
    expect(decide(table, { jobTypes: ['android-x'] }, 0.1).backend.name).to.equal('taskservice');
    expect(decide(table, { jobTypes: ['android-x'] }, 0.9).backend.name).to.equal('buildbot');
  });

  it('memoises decisions the table alone makes, never splits, and keeps the memo bounded', () => {
    const t = tableWithRoutes([
      ['linux64-*', 'taskservice'],
      ['android-*', { taskservice: 50, buildbot: 50 }],
    ]);
    const first = decide(t, { jobTypes: ['linux64-opt'] });
    expect(decide(t, { jobTypes: ['linux64-opt'] })).to.equal(first); // the same object: built once
    expect(Object.isFrozen(first)).to.equal(true);
    expect(decide(t, { jobTypes: ['mac-opt'] })).to.equal(decide(t, { jobTypes: ['mac-opt'] }));
    // A split still draws per request: both sides come out of the same job type.
    const sides = new Set([0.1, 0.9, 0.2, 0.8].map((draw) => decide(t, { jobTypes: ['android-x'] }, draw).backend.name));
    expect([...sides].sort()).to.deep.equal(['buildbot', 'taskservice']);
    expect(t.decisionCache.has('android-x')).to.equal(false);
    for (let i = 0; i < MATCH_CACHE_LIMIT + 50; i++) decide(t, { jobTypes: [`made-up-${i}`] });
    expect(t.decisionCache.size).to.be.at.most(MATCH_CACHE_LIMIT);
    expect(decide(t, { jobTypes: ['linux64-opt'] })).to.deep.include({ reason: 'route', jobType: 'linux64-opt' });
  });

  it('sends unmatched job types and requests without one to default', () => {
    expect(decide(table, { jobTypes: ['mac-opt'] })).to.deep.include({ reason: 'default', jobType: 'mac-opt' });
    expect(decide(table, { jobTypes: ['mac-opt'] }).backend.name).to.equal('buildbot');
    expect(decide(table, {})).to.deep.include({ reason: 'default' });
  });

  it('lets a valid X-Job-Type header win over everything else, and ignores a malformed one', () => {
    const d = decide(table, { headerJobType: 'linux64-opt', jobTypes: ['win32-debug'] });
    expect([d.backend.name, d.reason, d.jobType]).to.deep.equal(['taskservice', 'header', 'linux64-opt']);
    const bad = decide(table, { headerJobType: 'no spaces allowed', jobTypes: ['win32-debug'] });
    expect([bad.backend.name, bad.reason]).to.deep.equal(['buildbot', 'route']);
  });

  it('keeps a force for several builders on one backend when they all live there', () => {
    const d = decide(table, { jobTypes: ['linux64-opt', 'linux64-debug'] });
    expect([d.backend.name, d.reason, d.jobType]).to.deep.equal(['taskservice', 'route', 'linux64-opt,linux64-debug']);
  });

  it('sends a force whose builders span backends to the legacy master, whole', () => {
    const d = decide(table, { jobTypes: ['linux64-opt', 'win32-debug'] });
    expect([d.backend.name, d.reason, d.jobType]).to.deep.equal(['buildbot', 'mixed-builders', 'linux64-opt,win32-debug']);
  });

  it('sends an unreadable force body to default, saying so', () => {
    expect(decide(table, { unparsedBody: true })).to.deep.include({ reason: 'unparsed-body' });
  });

  it('honours an explicit default that is not the legacy backend', () => {
    const t = tableWithRoutes([['a', 'buildbot']], 'default: taskservice\n');
    expect(decide(t, { jobTypes: ['zzz'] }).backend.name).to.equal('taskservice');
    expect(decide(t, { jobTypes: ['a', 'zzz'] }).backend.name).to.equal('buildbot');
    expect(decide(t, { jobTypes: ['a', 'zzz'] }).reason).to.equal('mixed-builders');
  });
});
