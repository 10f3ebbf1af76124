/**
 * docs/metrics.md against the metrics catalogue (src/metrics/metrics.ts):
 * every registered metric has a section with its exact type and labels, a
 * question it answers and an example PromQL naming it; every section is a
 * registered metric; every metric has help text. Adding, renaming or
 * relabelling a metric without the docs fails here.
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { ProxyMetrics } from '../../../src/metrics/metrics.js';

const DOC_PATH = new URL('../../../docs/metrics.md', import.meta.url);

interface Registered {
  name: string;
  help: string;
  type: string;
  labels: string[];
}

async function registered(): Promise<Registered[]> {
  const metrics = new ProxyMetrics({ defaultMetrics: false });
  const json = await metrics.registry.getMetricsAsJSON();
  return json.map((m) => {
    // prom-client keeps a metric's label names on the instance; its typings do not expose them.
    const instance = metrics.registry.getSingleMetric(m.name) as unknown as { labelNames?: readonly string[] } | undefined;
    return { name: m.name, help: m.help, type: String(m.type), labels: [...(instance?.labelNames ?? [])] };
  });
}

interface Section {
  name: string;
  body: string;
}

/** The `### \`metric_name\`` sections of docs/metrics.md, each up to the next heading. */
function sections(markdown: string): Section[] {
  const out: Section[] = [];
  const heading = /^#{2,3} /;
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^### `([a-z_:][a-z0-9_:]*)`\s*$/.exec(lines[i]!);
    if (!m) continue;
    let end = i + 1;
    while (end < lines.length && !heading.test(lines[end]!)) end++;
    out.push({ name: m[1]!, body: lines.slice(i + 1, end).join('\n') });
  }
  return out;
}

function field(body: string, label: string): string | undefined {
  const m = new RegExp(`^- \\*\\*${label}:\\*\\* (.+)$`, 'm').exec(body);
  return m?.[1]?.trim();
}

describe('metrics catalogue and docs/metrics.md', () => {
  let metrics: Registered[];
  let docs: Section[];

  before(async () => {
    metrics = await registered();
    docs = sections(readFileSync(DOC_PATH, 'utf8'));
  });

  it('registers metrics at all (the catalogue was read)', () => {
    // Guards the other checks against passing vacuously on an empty registry.
    expect(metrics.map((m) => m.name)).to.include.members(['strangler_requests_total', 'strangler_request_duration_seconds', 'strangler_backend_up']);
  });

  it('gives every metric non-empty help text', () => {
    const withoutHelp = metrics.filter((m) => m.help.trim() === '').map((m) => m.name);
    expect(withoutHelp, 'metrics without help').to.deep.equal([]);
  });

  it('documents every registered metric in its own section', () => {
    const documented = new Set(docs.map((s) => s.name));
    const missing = metrics.map((m) => m.name).filter((n) => !documented.has(n));
    expect(missing, 'metrics with no "### `name`" section in docs/metrics.md').to.deep.equal([]);
  });

  it('documents no metric that is not registered, and none twice', () => {
    const names = new Set(metrics.map((m) => m.name));
    expect(docs.map((s) => s.name).filter((n) => !names.has(n)), 'sections for metrics that do not exist').to.deep.equal([]);
    const seen = docs.map((s) => s.name);
    expect(seen.filter((n, i) => seen.indexOf(n) !== i), 'metrics documented twice').to.deep.equal([]);
  });

  it("states each metric's type and labels exactly as registered", () => {
    const problems: string[] = [];
    for (const m of metrics) {
      const section = docs.find((s) => s.name === m.name);
      if (!section) continue; // reported by the test above
      const type = field(section.body, 'Type');
      if (type !== m.type) problems.push(`${m.name}: docs say type ${type ?? '(none)'}, registered as ${m.type}`);
      const labelsText = field(section.body, 'Labels');
      const labels = labelsText === undefined || labelsText === 'none' ? [] : [...labelsText.matchAll(/`([^`]+)`/g)].map((x) => x[1]!);
      if (labelsText === undefined) problems.push(`${m.name}: no "- **Labels:**" line`);
      else if (JSON.stringify(labels) !== JSON.stringify(m.labels)) problems.push(`${m.name}: docs list labels [${labels.join(', ')}], registered with [${m.labels.join(', ')}]`);
    }
    expect(problems).to.deep.equal([]);
  });

  it('says for each metric what question it answers, with an example PromQL using it', () => {
    const problems: string[] = [];
    for (const section of docs) {
      if (!field(section.body, 'Answers')) problems.push(`${section.name}: no "- **Answers:**" line`);
      const examples = [...section.body.matchAll(/```promql\n([\s\S]*?)```/g)].map((x) => x[1]!);
      // A histogram's example uses one of its series (_bucket, _count, _sum).
      if (!examples.some((e) => new RegExp(`\\b${section.name}(_bucket|_count|_sum)?\\b`).test(e))) problems.push(`${section.name}: no promql example naming it`);
    }
    expect(problems).to.deep.equal([]);
  });

  it('explains how label values are bounded, for every label in use', () => {
    const text = readFileSync(DOC_PATH, 'utf8');
    const boundsAt = text.indexOf('## Label values are bounded');
    expect(boundsAt, 'a "Label values are bounded" section').to.be.greaterThan(-1);
    const bounds = text.slice(boundsAt, text.indexOf('\n## ', boundsAt + 1));
    const labels = new Set(metrics.flatMap((m) => m.labels));
    const unexplained = [...labels].filter((l) => !bounds.includes(`\`${l}\``));
    expect(unexplained, 'labels the bounds section does not mention').to.deep.equal([]);
  });
});
