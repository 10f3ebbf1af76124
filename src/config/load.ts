/**
 * Reads routes.yaml, and either returns a compiled routing table or throws one
 * CONFIG_INVALID error that lists every problem as `file:line:column: field:
 * what was expected`, so the person who saved the file can fix it in one go.
 */
import { createHash } from 'node:crypto';
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node as YamlNode } from 'yaml';
import { StranglerError } from '../errors.js';
import type { RoutingTable } from '../routing/table.js';
import { compileConfig } from './compile.js';
import { ConfigFileReader, readRegularFileSync } from './read.js';
import { shapeProblems, validateShape, type PathSegment, type Problem, type RawConfig } from './schema.js';

/** A routes.yaml is a page of rules; anything this big is a mistake, and parsing it would cost memory. */
export const MAX_CONFIG_BYTES = 4 * 1024 * 1024;
const MAX_REPORTED_PROBLEMS = 20;

export interface LocatedProblem {
  file: string;
  line: number;
  column: number;
  field: string;
  message: string;
}

export async function loadConfigFile(file: string, now: Date = new Date()): Promise<RoutingTable> {
  return parseConfig(await readConfigBytes(file), file, now);
}

export function loadConfigFileSync(file: string, now: Date = new Date()): RoutingTable {
  return parseConfig(readRegularFileSync(file, MAX_CONFIG_BYTES), file, now);
}

/** A one-shot read of a routes file: regular files only, with a deadline (src/config/read.ts). */
export function readConfigBytes(file: string): Promise<Buffer> {
  return new ConfigFileReader(file, { maxBytes: MAX_CONFIG_BYTES }).read();
}

/** Parses, validates and compiles a whole file's bytes; throws CONFIG_INVALID listing every problem. */
export function parseConfig(bytes: Buffer, file: string, now: Date = new Date()): RoutingTable {
  return parseConfigGuarded(bytes, file, now).table;
}

/**
 * What {@link parseConfig} checks, for a thread that cannot hand the table
 * itself over (its matchers are functions): the document, known to compile
 * without a problem. Throws CONFIG_INVALID as parseConfig does.
 */
export function validateConfig(bytes: Buffer, file: string, now: Date = new Date()): RawConfig {
  return parseConfigGuarded(bytes, file, now).raw;
}

function parseConfigGuarded(bytes: Buffer, file: string, now: Date): { raw: RawConfig; table: RoutingTable } {
  try {
    return parseConfigUnguarded(bytes, file, now);
  } catch (error) {
    if (error instanceof StranglerError) throw error;
    // Whatever a hostile file does to the parser (stack depth, say), it is a rejected file, never a crash.
    throw invalid(file, [{ file, line: 1, column: 1, field: '(file)', message: `could not be parsed: ${(error as Error)?.message ?? String(error)}` }]);
  }
}

function parseConfigUnguarded(bytes: Buffer, file: string, now: Date): { raw: RawConfig; table: RoutingTable } {
  if (bytes.length > MAX_CONFIG_BYTES) {
    // Readers stop just past the limit, so the size of the file itself is not known here.
    throw invalid(file, [{ file, line: 1, column: 1, field: '(file)', message: `the file is too large; expected at most ${MAX_CONFIG_BYTES} bytes` }]);
  }
  const text = bytes.toString('utf8');
  const lineCounter = new LineCounter();
  // uniqueKeys is checked below in linear time: the parser's own check is quadratic in a map's size.
  // prettyErrors stays off: it appends "at line L, column C:" and a source excerpt to each message,
  // which would repeat the location the problem line already starts with.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: false, strict: true });

  const syntax = [...doc.errors, ...doc.warnings];
  if (syntax.length > 0) {
    const seen = new Set<string>();
    const problems: LocatedProblem[] = [];
    for (const e of syntax) {
      const pos = lineCounter.linePos(e.pos[0]);
      const problem = { file, line: pos.line, column: pos.col, field: SYNTAX, message: `YAML syntax: ${syntaxReason(e.message)}` };
      const key = `${problem.line}:${problem.column}:${problem.message}`;
      if (!seen.has(key)) problems.push(problem);
      seen.add(key);
    }
    throw invalid(file, problems.slice(0, MAX_REPORTED_PROBLEMS));
  }

  const duplicates = duplicateKeys(doc);
  if (duplicates.length > 0) {
    throw invalid(
      file,
      duplicates.slice(0, MAX_REPORTED_PROBLEMS).map((d) => {
        const pos = lineCounter.linePos(d.offset);
        return { file, line: pos.line, column: pos.col, field: SYNTAX, message: `YAML syntax: map keys must be unique; "${d.key}" appears again` };
      }),
    );
  }

  let raw: unknown;
  try {
    // maxAliasCount stops "billion laughs" alias bombs from expanding.
    raw = doc.toJS({ maxAliasCount: 50 });
  } catch (error) {
    throw invalid(file, [{ file, line: 1, column: 1, field: '(file)', message: (error as Error).message }]);
  }
  if (raw === null || raw === undefined) {
    throw invalid(file, [{ file, line: 1, column: 1, field: '(file)', message: 'the file is empty; expected a mapping with "backends" and "routes"' }]);
  }

  const locate = (problems: Problem[]) => {
    // A file can be wrong in thousands of places; the first few say enough, and locating each costs a walk.
    const located = problems.slice(0, MAX_REPORTED_PROBLEMS).map((p) => locateProblem(doc, lineCounter, file, p));
    if (problems.length > MAX_REPORTED_PROBLEMS) {
      located.push({ file, line: located.at(-1)!.line, column: 1, field: '(file)', message: `and ${problems.length - MAX_REPORTED_PROBLEMS} more problems` });
    }
    return located;
  };
  if (!validateShape(raw)) throw invalid(file, locate(shapeProblems(validateShape.errors ?? [], raw)));

  const hash = createHash('sha256').update(bytes).digest('hex');
  const result = compileConfig(raw as RawConfig, { file, hash, loadedAt: now, text });
  if (!result.ok) throw invalid(file, locate(result.problems));
  return { raw: raw as RawConfig, table: result.table };
}

/** The parser's message, minus advice meant for programmers calling it. */
function syntaxReason(message: string): string {
  const reason = message.split('\n')[0]!;
  return reason.startsWith('Source contains multiple documents') ? 'the file holds more than one document; expected one (no "---" line after the first)' : reason;
}

/** Keys repeated within one mapping, in linear time. */
function duplicateKeys(doc: Document): Array<{ key: string; offset: number }> {
  const found: Array<{ key: string; offset: number }> = [];
  visit(doc, {
    Map(_, map) {
      const seen = new Set<string>();
      for (const pair of map.items) {
        const key = isScalar(pair.key) ? String(pair.key.value) : JSON.stringify(pair.key);
        if (seen.has(key)) found.push({ key, offset: (pair.key as YamlNode | null)?.range?.[0] ?? 0 });
        seen.add(key);
      }
    },
  });
  return found;
}

/** The field of a problem in the YAML itself, which belongs to no field of the config. */
const SYNTAX = '(syntax)';

/** `file:line:column: field: reason`, or `file:line:column: YAML syntax: reason` for a syntax problem. */
export function formatProblem(p: LocatedProblem): string {
  return p.field === SYNTAX ? `${p.file}:${p.line}:${p.column}: ${p.message}` : `${p.file}:${p.line}:${p.column}: ${p.field}: ${p.message}`;
}

function invalid(file: string, problems: LocatedProblem[]): StranglerError {
  const lines = problems.map(formatProblem);
  const summary = problems.length === 1 ? lines[0]! : `${file}: ${problems.length} problems:\n  ${lines.join('\n  ')}`;
  return new StranglerError('CONFIG_INVALID', summary, { details: { file, problems } });
}

export function formatField(path: readonly PathSegment[]): string {
  if (path.length === 0) return '(top level)';
  return path.reduce<string>((out, segment) => (typeof segment === 'number' ? `${out}[${segment}]` : out ? `${out}.${segment}` : segment), '');
}

function locateProblem(doc: Document, lineCounter: LineCounter, file: string, problem: Problem): LocatedProblem {
  const node = findNode(doc, problem.path, problem.atKey === true);
  const offset = node?.range?.[0] ?? 0;
  const pos = lineCounter.linePos(offset);
  return { file, line: pos.line, column: pos.col, field: formatField(problem.path), message: problem.message };
}

/** The YAML node a path points at, or the deepest one on the way there when the path ends early. */
function findNode(doc: Document, path: readonly PathSegment[], atKey: boolean): YamlNode | undefined {
  let node = doc.contents as YamlNode | null;
  let deepest: YamlNode | undefined = node ?? undefined;
  for (let i = 0; i < path.length && node; i++) {
    const segment = path[i];
    const last = i === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(segment));
      if (!pair) return deepest;
      const key = pair.key as YamlNode;
      if (last && atKey) return key;
      node = (pair.value as YamlNode | null) ?? key;
    } else if (isSeq(node) && typeof segment === 'number') {
      node = (node.items[segment] as YamlNode | undefined) ?? null;
    } else {
      return deepest;
    }
    if (node) deepest = node;
  }
  return deepest;
}
