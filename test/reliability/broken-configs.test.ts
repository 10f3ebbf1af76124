/**
 * Broken configs saved while serving: hundreds of invalid routes.yaml files
 * (fuzzed YAML, mutated valid configs, bad regexes, huge files, deep nesting,
 * alias bombs), each rejected with a located message, routing unchanged, no
 * crash, memory bounded.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import http from 'node:http';
import { parseConfig } from '../../src/config/load.js';
import { startUpstream, type TestUpstream } from '../support/upstream.js';
import { routesYaml, startTestProxy, type TestProxy } from '../support/proxy.js';
import { FULL, heapMiB, send } from './kit.js';

const FILES = FULL ? 400 : 200;

/** A valid config to mutate: every kind of key appears once. */
function validConfig(legacyUrl: string, nextUrl: string): string {
  return routesYaml(
    { buildbot: { url: legacyUrl, legacy: true }, taskservice: { url: nextUrl, extra: 'connectTimeoutMs: 1000, health: { path: /, intervalMs: 5000 }' } },
    `default: buildbot
routes:
  - jobType: linux64-*
    backend: taskservice
  - jobType: /^android-api-1[56]-/
    split: { taskservice: 25, buildbot: 75 }
    stickyBy: [header:X-Push-Id]
  - jobType: win32-debug
    backend: buildbot
    shadow: { backend: taskservice, percent: 10 }
settings:
  bodyPeekLimitBytes: 1048576
`,
  );
}

/** Hand-made mutations, each breaking one rule. */
function mutations(valid: string): string[] {
  const swap = (from: string | RegExp, to: string) => valid.replace(from, to);
  const badRegexes = ['/[/', '/(/', '/a{2,1}/', '/(?<n>a)(?<n>b)/', '/\\/', '/*/', '/+a/', '/a**/', '/(?=/', '/[z-a]/'];
  return [
    swap('legacy: true', 'legacy: "yes"'),
    swap('legacy: true', ''),
    swap('{ url: http', '{ legacy: true, url: http').replace(/legacy: true, url: (http:\/\/127\.0\.0\.1:\d+) \}/, 'legacy: true, url: $1, legacy: true }'),
    swap('backend: taskservice', 'backend: nowhere'),
    swap('backend: taskservice', 'backend: 42'),
    swap('split: { taskservice: 25, buildbot: 75 }', 'split: { taskservice: 0, buildbot: 0 }'),
    swap('split: { taskservice: 25, buildbot: 75 }', 'split: { taskservice: -5, buildbot: 75 }'),
    swap('split: { taskservice: 25, buildbot: 75 }', 'split: { taskservice: "25%", buildbot: 75 }'),
    swap('split: { taskservice: 25, buildbot: 75 }', 'split: { elsewhere: 25, buildbot: 75 }'),
    swap('split: { taskservice: 25, buildbot: 75 }', 'split: []'),
    swap('default: buildbot', 'default: nowhere'),
    swap('default: buildbot', 'default: [buildbot]'),
    swap('jobType: win32-debug', 'jobType: linux64-*'),
    swap('jobType: win32-debug', 'jobType: ""'),
    swap('jobType: win32-debug', 'jobTyp: win32-debug'),
    swap('routes:', 'rutes:'),
    swap('backends:', 'backend:'),
    swap('http://127.0.0.1', 'ftp://127.0.0.1'),
    swap('http://127.0.0.1', 'http://user:pw@127.0.0.1'),
    swap('stickyBy: [header:X-Push-Id]', 'stickyBy: [cookie:session]'),
    swap('stickyBy: [header:X-Push-Id]', 'stickyBy: header:X-Push-Id'),
    swap('shadow: { backend: taskservice, percent: 10 }', 'shadow: { backend: taskservice, percent: 150 }'),
    swap('shadow: { backend: taskservice, percent: 10 }', 'shadow: { backend: nowhere }'),
    swap('bodyPeekLimitBytes: 1048576', 'bodyPeekLimitBytes: -1'),
    swap('connectTimeoutMs: 1000', 'connectTimeoutMs: 0'),
    swap('intervalMs: 5000', 'intervalMs: soon'),
    swap('path: /', 'path: health'),
    valid + 'routes: []\n', // duplicate key
    '',
    '---\n',
    'just a string',
    '[1, 2, 3]',
    'backends: {}\n',
    'backends:\n  "bad name!": { url: http://127.0.0.1:1, legacy: true }\n',
    ...badRegexes.map((r) => swap('jobType: /^android-api-1[56]-/', `jobType: ${JSON.stringify(r)}`)),
  ];
}

/** Files that attack the parser itself. */
function hostileFiles(): string[] {
  const bomb = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
  for (let i = 1; i < 10; i++) bomb.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9).fill('*' + String.fromCharCode(96 + i)).join(',')}]`);
  return [
    bomb.join('\n'),
    'backends: ' + '['.repeat(50_000) + ']'.repeat(50_000),
    'backends:\n' + Array.from({ length: 2000 }, (_, i) => `${' '.repeat(i + 2)}k${i}:`).join('\n'),
    'backends: {' + Array.from({ length: 50_000 }, (_, i) => `b${i}: 1`).join(', ') + '}',
    '# ' + 'x'.repeat(5 * 1024 * 1024),
    'routes:\n' + '  - jobType: a\n    backend: b\n'.repeat(100_000),
    Buffer.from([0xff, 0xfe, 0x00, 0x62, 0x61, 0x63, 0x6b]).toString('latin1'),
    '\u0000\u0001\u0002',
    'backends: !!js/function "function () { process.exit(1) }"',
    'backends: !!binary aGVsbG8=',
    '__proto__: { polluted: true }\nbackends: {}\n',
    'constructor: { prototype: { polluted: true } }\n',
  ];
}

describe('reliability: broken configs saved while serving', function () {
  this.timeout(FULL ? 300_000 : 120_000);
  let legacy: TestUpstream;
  let next: TestUpstream;
  let t: TestProxy;
  before(async () => {
    legacy = await startUpstream('buildbot');
    next = await startUpstream('taskservice');
  });
  after(async () => {
    await t?.close();
    await legacy.close();
    await next.close();
  });

  it(`rejects ${FILES}+ invalid files one after another, each with a located message, and never stops routing`, async () => {
    const valid = validConfig(legacy.url, next.url);
    parseConfig(Buffer.from(valid), 'valid.yaml'); // the base really is valid
    t = await startTestProxy(valid, { quiet: true });
    const hashInForce = t.proxy.store.current().source.hash;

    // Fuzzed variants of the valid file (characters flipped, lines cut) that the parser rejects.
    const invalid = [...mutations(valid), ...hostileFiles()];
    const fuzz = fc.sample(
      fc.tuple(fc.nat(valid.length - 1), fc.nat(valid.length - 1), fc.constantFrom(':', '{', '[', '-', '"', '\t', '&', '*', '!', '%', '\n  ', '', '}}')),
      { numRuns: FILES * 4, seed: 42 },
    );
    for (const [at, cut, insert] of fuzz) {
      if (invalid.length >= FILES + 60) break;
      const text = at % 3 === 0 ? valid.slice(0, cut) : valid.slice(0, at) + insert + valid.slice(at + 1);
      try {
        parseConfig(Buffer.from(text), 'probe.yaml');
      } catch {
        invalid.push(text); // only files that really are invalid count
      }
    }
    expect(invalid.length).to.be.at.least(FILES);

    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    let stop = false;
    const misrouted: string[] = [];
    const traffic = (async () => {
      while (!stop) {
        const res = await send(agent, `${t.url}/api/v2/builders/linux64-opt`);
        if (res.status !== 200 || res.headers['x-strangler-backend'] !== 'taskservice') misrouted.push(`${res.status} ${String(res.headers['x-strangler-backend'])}`);
      }
    })();

    global.gc?.();
    const heapBefore = heapMiB();
    const unlocated: string[] = [];
    for (const [i, text] of invalid.entries()) {
      t.writeConfig(text);
      const event = await t.proxy.store.reload('admin');
      expect(event.result, `file #${i} was accepted:\n${text.slice(0, 300)}`).to.equal('failure');
      expect(event.error?.code).to.equal('CONFIG_INVALID');
      if (!/routes\.yaml:\d+:\d+: \S/.test(event.error!.message)) unlocated.push(event.error!.message.slice(0, 200));
      expect(t.proxy.store.current().source.hash).to.equal(hashInForce);
    }
    stop = true;
    await traffic;
    agent.destroy();

    expect(unlocated).to.deep.equal([]);
    expect(misrouted.slice(0, 5)).to.deep.equal([]);
    expect(({} as Record<string, unknown>).polluted).to.equal(undefined);
    // Rejected files are not kept: once collected, the heap is back near where it started. The test
    // upstreams' records of every request sent meanwhile are not the proxy's memory, and grow with
    // the time the reloads take (large files are parsed in a worker, which takes a while to start).
    legacy.received.length = 0;
    next.received.length = 0;
    expect(global.gc, 'run with --expose-gc (.mocharc.json sets it)').to.be.a('function');
    global.gc!();
    expect(heapMiB() - heapBefore).to.be.lessThan(32);
    // And the proxy still takes a good file.
    t.writeConfig(valid.replace('backend: taskservice', 'backend: buildbot'));
    expect((await t.proxy.store.reload('admin')).result).to.equal('success');
  });
});
