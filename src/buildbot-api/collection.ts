/**
 * Buildbot 3.7's REST collection semantics over plain objects: the query
 * parameters `www/rest.py` and `data/connector.py` (resultspec_from_jsonapi)
 * read, the filtering, ordering and paging of `data/resultspec.py`, the
 * envelope and the error answers. Pure: the caller reads the request and
 * writes the answer.
 *
 * Where Buildbot's own answer depends on its database (a filter on a column
 * runs as SQL, one on a computed field runs in Python), each field says which
 * (`sql`, from the endpoint's `fieldMapping`) and gets that behaviour:
 * - SQL: a null never matches any filter (`ne` and `notin` included), and
 *   `contains` is SQL `LIKE '%v%'` (`%` and `_` are wildcards; ASCII
 *   case-insensitive as in SQLite and MySQL, sensitive with
 *   `caseSensitiveLike` for a PostgreSQL legacy master).
 * - Python: `contains` is a substring test, `ne` and `notin` match a null.
 *   Buildbot answers 500 for `lt`/`le`/`gt`/`ge`/`contains` against a null
 *   (a Python TypeError); here that item simply does not match.
 *
 * One deliberate difference: `meta.total` counts every item that passes the
 * filters, before offset and limit, as Buildbot documents it. Buildbot 3.7
 * itself, when it pages in SQL (builds, buildrequests, buildsets without
 * Python-only filters), reports the length of the page instead (seen on a real
 * 3.7 master: `/buildrequests?limit=2&offset=1` of 3 answers `total: 2`).
 */

export type FieldType = 'integer' | 'datetime' | 'string' | 'boolean' | 'identifier' | 'unparseable';

export interface FieldSpec {
  /**
   * How a query value is read (`data/types.py` valueFromString): integer and
   * datetime as Python `int()`, boolean as `string2boolean`, identifier by its
   * pattern and length; `unparseable` types (properties, lists of entities)
   * accept no filter value at all.
   */
  type: FieldType;
  /** For identifiers: the longest value accepted. */
  maxLength?: number;
  /** True when Buildbot filters this field in SQL (it is in the endpoint's `fieldMapping`). */
  sql: boolean;
}

export interface EntitySpec {
  /** Buildbot's resource type name: `build`. */
  name: string;
  /** The envelope key: `builds`. */
  plural: string;
  /** The id field; rows without an `order` come in its ascending order, as a table scan returns them. */
  keyField: string;
  fields: Readonly<Record<string, FieldSpec>>;
  /**
   * True when Buildbot pages this kind in SQL (SQLite's rules: a negative
   * limit is no limit, a negative offset is 0); false when in Python (slice
   * rules: negative values count from the end).
   */
  sqlPaging: boolean;
}

const int = (sql = true): FieldSpec => ({ type: 'integer', sql });
const date = (sql = true): FieldSpec => ({ type: 'datetime', sql });
const str = (sql = true): FieldSpec => ({ type: 'string', sql });
const bool = (sql = true): FieldSpec => ({ type: 'boolean', sql });
const ident = (maxLength: number, sql = true): FieldSpec => ({ type: 'identifier', maxLength, sql });
const opaque: FieldSpec = { type: 'unparseable', sql: false };

/**
 * The entity types of Buildbot 3.7 the proxy answers for queue work, field
 * for field (`EntityType` of each `data/*.py`). `complete` and `claimed` are
 * popped by the endpoints into SQL conditions; marked sql as they behave so.
 */
export const ENTITIES = {
  buildrequest: {
    name: 'buildrequest',
    plural: 'buildrequests',
    keyField: 'buildrequestid',
    sqlPaging: true,
    fields: {
      buildrequestid: int(),
      buildsetid: int(),
      builderid: int(),
      priority: int(),
      claimed: bool(),
      claimed_at: date(),
      claimed_by_masterid: int(),
      complete: bool(),
      results: int(),
      submitted_at: date(),
      complete_at: date(),
      waited_for: bool(),
      properties: opaque,
    },
  },
  build: {
    name: 'build',
    plural: 'builds',
    keyField: 'buildid',
    sqlPaging: true,
    fields: {
      buildid: int(),
      number: int(),
      builderid: int(),
      buildrequestid: int(),
      workerid: int(),
      masterid: int(),
      started_at: date(),
      complete: bool(),
      complete_at: date(),
      results: int(),
      state_string: str(),
      properties: opaque,
    },
  },
  buildset: {
    name: 'buildset',
    plural: 'buildsets',
    keyField: 'bsid',
    sqlPaging: true,
    fields: {
      bsid: int(),
      external_idstring: str(),
      reason: str(),
      submitted_at: int(),
      complete: bool(),
      complete_at: int(),
      results: int(),
      sourcestamps: opaque,
      parent_buildid: int(),
      parent_relationship: str(),
    },
  },
  step: {
    name: 'step',
    plural: 'steps',
    keyField: 'stepid',
    sqlPaging: false,
    fields: {
      stepid: int(false),
      number: int(false),
      name: ident(50, false),
      buildid: int(false),
      started_at: date(false),
      complete: bool(false),
      complete_at: date(false),
      results: int(false),
      state_string: str(false),
      urls: opaque,
      hidden: bool(false),
    },
  },
  log: {
    name: 'log',
    plural: 'logs',
    keyField: 'logid',
    sqlPaging: false,
    fields: {
      logid: int(false),
      name: str(false),
      slug: ident(50, false),
      stepid: int(false),
      complete: bool(false),
      num_lines: int(false),
      type: ident(1, false),
    },
  },
} as const satisfies Record<string, EntitySpec>;

export type FilterOp = 'eq' | 'ne' | 'lt' | 'le' | 'gt' | 'ge' | 'contains' | 'in' | 'notin';
export type FilterValue = number | string | boolean;

export interface Filter {
  field: string;
  op: FilterOp;
  /** One value: the operator as written. Several (a repeated parameter): eq and in mean "any of", ne and notin "none of". */
  values: FilterValue[];
}

export interface CollectionQuery {
  filters: Filter[];
  /** Field names, `-` in front for descending; null when not given. */
  order: string[] | null;
  limit: number | null;
  offset: number | null;
  /** The `field` selection; null for every field. */
  fields: string[] | null;
  /** The `property` values (`*` for all): which properties builds and buildrequests carry. */
  properties: string[];
}

/** An answer exactly as Buildbot's REST API writes it. */
export interface BuildbotAnswer {
  status: number;
  contentType: string;
  body: string;
}

export type ParsedQuery = { ok: true; query: CollectionQuery } | { ok: false; error: BuildbotAnswer & { message: string } };

export interface MatchOptions {
  /** SQL `LIKE` for `contains` is case-sensitive (PostgreSQL) rather than ASCII case-insensitive (SQLite, MySQL). Default false. */
  caseSensitiveLike?: boolean;
}

const SINGULAR_OPS: ReadonlySet<string> = new Set(['eq', 'ne', 'lt', 'le', 'gt', 'ge', 'contains', 'in', 'notin']);
// resultspec.py plural_operators: with several values the comparisons do not exist, and the parameter is ignored.
const PLURAL_OPS: ReadonlySet<string> = new Set(['eq', 'ne', 'contains', 'in', 'notin']);

/** Buildbot's REST error: `json.dumps({"error": msg})`, served as text/plain. */
function errorAnswer(status: number, message: string): { ok: false; error: BuildbotAnswer & { message: string } } {
  return { ok: false, error: { status, contentType: 'text/plain; charset=utf-8', body: pythonJsonDumps({ error: message }, 'default'), message } };
}

const badRequest = (message: string) => errorAnswer(400, message);
// `field=` or `order=` with an empty value makes Buildbot index an empty string: an IndexError, answered 500.
const emptyFieldName = () => errorAnswer(500, "IndexError('string index out of range')");

/** Python `int()` of a query string: surrounding whitespace, a sign, digits with single underscores between them. */
function pythonInt(text: string): number | undefined {
  const t = text.trim();
  if (!/^[+-]?\d+(?:_\d+)*$/.test(t)) return undefined;
  return Number(t.replace(/_/g, ''));
}

const BOOLEAN_WORDS: Readonly<Record<string, boolean>> = { on: true, true: true, yes: true, '1': true, off: false, false: false, no: false, '0': false };
// Python's re `$` also matches before a final newline, and Buildbot's Identifier check uses re.match with `$`.
const IDENTIFIER = /^[a-zA-Z_-][a-zA-Z0-9._-]*\n?$/;

/** A query value read as Buildbot reads it for a field, or undefined where Buildbot refuses it. */
export function valueFromString(spec: FieldSpec, text: string): FilterValue | undefined {
  switch (spec.type) {
    case 'integer':
    case 'datetime':
      return pythonInt(text);
    case 'string':
      return text;
    case 'boolean':
      // bytes.lower() lowers ASCII letters only.
      return BOOLEAN_WORDS[text.replace(/[A-Z]/g, (c) => c.toLowerCase())];
    case 'identifier':
      return IDENTIFIER.test(text) && text.length <= (spec.maxLength ?? Infinity) ? text : undefined;
    case 'unparseable':
      return undefined;
  }
}

function groupParams(input: QueryInput): Map<string, string[]> {
  const pairs: Iterable<readonly [string, string]> = typeof input === 'string' ? new URLSearchParams(input) : input;
  const grouped = new Map<string, string[]>();
  for (const [key, value] of pairs) {
    const values = grouped.get(key);
    if (values === undefined) grouped.set(key, [value]);
    else values.push(value);
  }
  return grouped;
}

export type QueryInput = string | URLSearchParams | Iterable<readonly [string, string]>;

/**
 * Reads a request's query parameters as Buildbot 3.7 does for an entity type,
 * or the error answer Buildbot gives: parameters in the order of their first
 * appearance, the first bad one answers.
 *
 * - `order`, `field`: each must name a field (`no such field 'x'`, 400);
 *   ordering or filtering on a field outside `field` is refused.
 * - `limit`, `offset`: Python integers (`invalid limit`, 400); the first value counts.
 * - `property`: kept as given.
 * - `<field>=v` is `eq`; `<field>__<op>=v` with a known op and field is that
 *   op; any other name with `__` is silently ignored, as Buildbot does; any
 *   other name is `unrecognized query parameter 'x'` (400).
 * - A value the field's type cannot read: `invalid filter value for <param>` (400).
 *   There is no `null`: Buildbot cannot filter on one.
 * - A single item (`isCollection: false`) takes no filter: `this is not a collection` (400).
 *
 * @example parseCollectionQuery('results=0&order=-buildid&limit=10', ENTITIES.build)
 */
export function parseCollectionQuery(input: QueryInput, entity: EntitySpec, options: { isCollection?: boolean } = {}): ParsedQuery {
  const hasField = (name: string) => Object.hasOwn(entity.fields, name);
  let order: string[] | null = null;
  let fields: string[] | null = null;
  let limit: number | null = null;
  let offset: number | null = null;
  const properties: string[] = [];
  const filters: Filter[] = [];

  for (const [key, values] of groupParams(input)) {
    if (key === 'order' || key === 'field') {
      const negOk = key === 'order';
      for (const v of values) {
        if (v === '') return emptyFieldName();
        const name = negOk && v.startsWith('-') ? v.slice(1) : v;
        if (!hasField(name)) return badRequest(`no such field '${name}'`);
      }
      if (negOk) order = values;
      else fields = values;
    } else if (key === 'limit' || key === 'offset') {
      const n = pythonInt(values[0]!);
      if (n === undefined) return badRequest(`invalid ${key}`);
      if (key === 'limit') limit = n;
      else offset = n;
    } else if (key === 'property') {
      properties.push(...values);
    } else if (hasField(key)) {
      const parsed = parseValues(entity.fields[key]!, values);
      if (parsed === undefined) return badRequest(`invalid filter value for ${key}`);
      filters.push({ field: key, op: 'eq', values: parsed });
    } else if (key.includes('__')) {
      const at = key.lastIndexOf('__');
      const field = key.slice(0, at);
      const op = key.slice(at + 2);
      const ops = values.length === 1 ? SINGULAR_OPS : PLURAL_OPS;
      if (ops.has(op) && hasField(field)) {
        const parsed = parseValues(entity.fields[field]!, values);
        if (parsed === undefined) return badRequest(`invalid filter value for ${key}`);
        filters.push({ field, op: op as FilterOp, values: parsed });
      }
    } else {
      return badRequest(`unrecognized query parameter '${key}'`);
    }
  }

  if (fields !== null) {
    const selected = new Set(fields);
    if (order !== null && order.some((o) => !selected.has(o.replace(/^-+/, '')))) return badRequest('cannot order on un-selected fields');
    if (filters.some((f) => !selected.has(f.field))) return badRequest('cannot filter on un-selected fields');
  }
  if (options.isCollection === false && filters.length > 0) return badRequest('this is not a collection');
  return { ok: true, query: { filters, order, limit, offset, fields, properties } };
}

function parseValues(spec: FieldSpec, texts: readonly string[]): FilterValue[] | undefined {
  const values: FilterValue[] = [];
  for (const text of texts) {
    const v = valueFromString(spec, text);
    if (v === undefined) return undefined;
    values.push(v);
  }
  return values;
}

/** Compares two field values: numbers and booleans by value, strings by code point (Python and SQLite's BINARY collation). */
function compareValues(a: unknown, b: unknown): number {
  if (typeof a === 'string' && typeof b === 'string') {
    if (a === b) return 0;
    // UTF-16 order differs from code point order only around surrogates; compare code points there.
    const ia = a[Symbol.iterator]();
    const ib = b[Symbol.iterator]();
    for (;;) {
      const x = ia.next();
      const y = ib.next();
      if (x.done) return y.done ? 0 : -1;
      if (y.done) return 1;
      if (x.value !== y.value) return x.value.codePointAt(0)! - y.value.codePointAt(0)!;
    }
  }
  const na = typeof a === 'boolean' ? Number(a) : a;
  const nb = typeof b === 'boolean' ? Number(b) : b;
  if (typeof na === 'number' && typeof nb === 'number') return na === nb ? 0 : na < nb ? -1 : 1;
  return 0;
}

/** The text SQL's LIKE sees for a value: booleans are stored as 0 and 1. */
function sqlText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return String(v);
  if (typeof v === 'boolean') return v ? '1' : '0';
  return undefined;
}

const asciiLower = (s: string) => s.replace(/[A-Z]/g, (c) => c.toLowerCase());

/** SQL `text LIKE '%' || needle || '%'` without an ESCAPE clause, as SQLAlchemy's `contains` sends it. */
function sqlContains(text: string, needle: string, caseSensitive: boolean): boolean {
  const [t, n] = caseSensitive ? [text, needle] : [asciiLower(text), asciiLower(needle)];
  let pattern = '';
  for (const ch of n) pattern += ch === '%' ? '.*' : ch === '_' ? '.' : ch.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');
  return new RegExp(pattern, 'su').test(t);
}

function matches(item: Record<string, unknown>, filter: Filter, spec: FieldSpec | undefined, options: MatchOptions): boolean {
  const d = item[filter.field];
  const vs = filter.values;
  const sql = spec?.sql ?? false;
  if (d === null || d === undefined) {
    if (sql) return false;
    // Python: None equals no parsed value, differs from all of them.
    return filter.op === 'ne' || filter.op === 'notin';
  }
  const single = vs.length === 1;
  const first = vs[0];
  switch (filter.op) {
    case 'eq':
    case 'in':
      return vs.some((v) => v === d);
    case 'ne':
    case 'notin':
      return !vs.some((v) => v === d);
    case 'lt':
      return compareValues(d, first) < 0 && comparable(d, first);
    case 'le':
      return compareValues(d, first) <= 0 && comparable(d, first);
    case 'gt':
      return compareValues(d, first) > 0 && comparable(d, first);
    case 'ge':
      return compareValues(d, first) >= 0 && comparable(d, first);
    case 'contains': {
      if (sql) {
        const text = sqlText(d);
        return text !== undefined && vs.some((v) => sqlContains(text, sqlText(v)!, options.caseSensitiveLike ?? false));
      }
      if (Array.isArray(d)) return vs.some((v) => d.includes(v));
      if (typeof d !== 'string') return false;
      // Python: one value is a substring test; several intersect with set(d), the string's characters.
      return single ? d.includes(String(first)) : vs.some((v) => typeof v === 'string' && [...d].includes(v));
    }
  }
}

function comparable(a: unknown, b: unknown): boolean {
  const kind = (v: unknown) => (typeof v === 'boolean' ? 'number' : typeof v);
  return kind(a) === kind(b) && (typeof a === 'string' || typeof a === 'number' || typeof a === 'boolean');
}

/** Orders rows: each `order` key (nulls first ascending, last descending, as Buildbot's NoneComparator), then the key field ascending. */
function comparatorOf(order: readonly string[] | null, keyField: string): (a: Record<string, unknown>, b: Record<string, unknown>) => number {
  const keys = (order ?? []).map((o) => (o.startsWith('-') ? { field: o.slice(1), desc: true } : { field: o, desc: false }));
  if (!keys.some((k) => k.field === keyField)) keys.push({ field: keyField, desc: false });
  return (a, b) => {
    for (const { field, desc } of keys) {
      const x = a[field] ?? null;
      const y = b[field] ?? null;
      const c = x === null ? (y === null ? 0 : -1) : y === null ? 1 : compareValues(x, y);
      if (c !== 0) return desc ? -c : c;
    }
    return 0;
  };
}

function project<T extends object>(item: T, fields: readonly string[] | null): Partial<T> {
  if (fields === null) return item;
  const wanted = new Set(fields);
  return Object.fromEntries(Object.entries(item).filter(([k]) => wanted.has(k))) as Partial<T>;
}

/** The slice of rows a limit and offset select, by the entity's paging rules. */
function page<T>(rows: readonly T[], query: Pick<CollectionQuery, 'limit' | 'offset'>, sqlPaging: boolean): T[] {
  if (sqlPaging) {
    const offset = Math.max(0, query.offset ?? 0);
    const end = query.limit === null || query.limit < 0 ? undefined : offset + query.limit;
    return rows.slice(offset, end);
  }
  // Python `data[offset:end]`, end = (offset or 0) + limit; JS slice reads negatives the same way.
  const end = query.limit === null ? undefined : (query.offset ?? 0) + query.limit;
  return rows.slice(query.offset ?? 0, end);
}

export interface CollectionResult<T> {
  items: Array<Partial<T>>;
  /** Rows that passed the filters, before offset and limit. */
  total: number;
}

/** The rows of a query that pass its filters, in its order (without paging or field selection). */
function filterAndSort<T extends object>(items: readonly T[], query: CollectionQuery, entity: EntitySpec, options: MatchOptions): T[] {
  const rows = items.filter((item) => query.filters.every((f) => matches(item as Record<string, unknown>, f, entity.fields[f.field], options)));
  const cmp = comparatorOf(query.order, entity.keyField);
  return rows.sort((a, b) => cmp(a as Record<string, unknown>, b as Record<string, unknown>));
}

/**
 * A query read from request parameters and applied: the rows, or Buildbot's
 * error answer for the parameters (with an empty page, so that a caller that
 * knows the parameters are good, e.g. because the legacy master took them,
 * can read `items` without a check).
 */
export type QueryOutcome<T> = CollectionResult<T> & ({ ok: true } | { ok: false; status: number; message: string; answer: BuildbotAnswer });

const ENTITY_BY_PLURAL: ReadonlyMap<string, EntitySpec> = new Map(Object.values(ENTITIES).map((e) => [e.plural, e]));

/** The entity type for a name or plural (`build`, `builds`); throws a TypeError for another (a caller's mistake). */
export function entityOf(kind: EntitySpec | string): EntitySpec {
  if (typeof kind !== 'string') return kind;
  const entity = ENTITY_BY_PLURAL.get(kind) ?? (Object.hasOwn(ENTITIES, kind) ? (ENTITIES as Record<string, EntitySpec>)[kind] : undefined);
  if (entity === undefined) throw new TypeError(`no Buildbot entity type "${kind}"`);
  return entity;
}

/**
 * A query applied to rows as Buildbot applies its result spec: filters (all
 * must match), total, order, offset and limit, then field selection. Given the
 * request's parameters instead of a parsed query, it reads them first
 * ({@link parseCollectionQuery}) and answers Buildbot's error if they are bad.
 *
 * @example applyQuery(builds, parsed.query, ENTITIES.build) // {items, total}
 * @example applyQuery(builds, new URLSearchParams('limit=abc'), 'builds') // {ok: false, status: 400, message: 'invalid limit', ...}
 */
export function applyQuery<T extends object>(items: readonly T[], query: CollectionQuery, entity: EntitySpec, options?: MatchOptions): CollectionResult<T>;
export function applyQuery(items: readonly unknown[], params: URLSearchParams | string, kind: EntitySpec | string, options?: MatchOptions): QueryOutcome<unknown>;
export function applyQuery(
  items: readonly unknown[],
  query: CollectionQuery | URLSearchParams | string,
  kind: EntitySpec | string,
  options: MatchOptions = {},
): CollectionResult<unknown> | QueryOutcome<unknown> {
  const entity = entityOf(kind);
  if (isParsed(query)) return applyParsed(items as readonly object[], query, entity, options);
  const parsed = parseCollectionQuery(query, entity);
  if (!parsed.ok) return outcomeOfError(parsed.error);
  return { ok: true, ...applyParsed(rowsOf(items), parsed.query, entity, options) };
}

function applyParsed<T extends object>(items: readonly T[], query: CollectionQuery, entity: EntitySpec, options: MatchOptions): CollectionResult<T> {
  const rows = filterAndSort(items, query, entity, options);
  return { items: page(rows, query, entity.sqlPaging).map((r) => project(r, query.fields)), total: rows.length };
}

function isParsed(query: CollectionQuery | URLSearchParams | string): query is CollectionQuery {
  return typeof query === 'object' && !(query instanceof URLSearchParams);
}

// Rows of a JSON answer are objects; anything else has no fields, so filters see nulls in it.
function rowsOf(items: readonly unknown[]): object[] {
  return items.map((item) => (typeof item === 'object' && item !== null ? item : {}));
}

function outcomeOfError(error: BuildbotAnswer & { message: string }): QueryOutcome<never> {
  return { ok: false, items: [], total: 0, status: error.status, message: error.message, answer: { status: error.status, contentType: error.contentType, body: error.body } };
}

/**
 * The query to send the legacy master for a merged read: the same
 * parameters without `offset`, and `limit` = offset + limit (no limit if none),
 * since the first offset+limit rows of the union come from the first
 * offset+limit rows of each side.
 */
export function legacyQueryOf(params: URLSearchParams, query: CollectionQuery): URLSearchParams {
  const out = new URLSearchParams(params);
  out.delete('offset');
  out.delete('limit');
  if (query.limit !== null && query.limit >= 0) out.set('limit', String(Math.max(0, query.offset ?? 0) + query.limit));
  return out;
}

/**
 * Merges the proxy's rows with the legacy master's answer to
 * {@link legacyQueryOf} (already filtered, ordered and cut by it) into the
 * page Buildbot would give over both: filters and order applied to ours, a
 * stable merge in the query's order (the legacy's first on ties: its ids are
 * the lower ones), offset and limit once, field selection, and total = both
 * totals. Without an `order`, every legacy row comes first, since every
 * minted id is above every legacy id. Paging follows SQL's rules here.
 *
 * The total is only as right as the legacy's: a 3.7 master that pages in SQL
 * reports the length of its page as `meta.total` (see the top of this file).
 *
 * @example mergeCollections(ourBuilds, {items: legacy.builds, total: legacy.meta.total}, params, 'builds')
 */
export function mergeCollections<T extends object>(
  ours: readonly T[],
  theirs: { items: ReadonlyArray<Partial<T>>; total: number },
  query: CollectionQuery,
  entity: EntitySpec,
  options?: MatchOptions,
): CollectionResult<T>;
export function mergeCollections(
  ours: readonly unknown[],
  theirs: { items: readonly unknown[]; total: number },
  params: URLSearchParams | string,
  kind: EntitySpec | string,
  options?: MatchOptions,
): QueryOutcome<unknown>;
export function mergeCollections(
  ours: readonly unknown[],
  theirs: { items: readonly unknown[]; total: number },
  query: CollectionQuery | URLSearchParams | string,
  kind: EntitySpec | string,
  options: MatchOptions = {},
): CollectionResult<unknown> | QueryOutcome<unknown> {
  const entity = entityOf(kind);
  if (isParsed(query)) return mergeParsed(ours as readonly object[], theirs as { items: readonly object[]; total: number }, query, entity, options);
  const parsed = parseCollectionQuery(query, entity);
  if (!parsed.ok) return outcomeOfError(parsed.error);
  return { ok: true, ...mergeParsed(rowsOf(ours), { items: rowsOf(theirs.items), total: theirs.total }, parsed.query, entity, options) };
}

function mergeParsed<T extends object>(
  ours: readonly T[],
  theirs: { items: ReadonlyArray<Partial<T>>; total: number },
  query: CollectionQuery,
  entity: EntitySpec,
  options: MatchOptions,
): CollectionResult<T> {
  const mine = filterAndSort(ours, query, entity, options);
  let merged: Array<Partial<T>>;
  if (query.order === null) {
    merged = [...theirs.items, ...mine];
  } else {
    const cmp = comparatorOf(query.order, entity.keyField);
    merged = [];
    let i = 0;
    let j = 0;
    while (i < theirs.items.length || j < mine.length) {
      const take = j >= mine.length || (i < theirs.items.length && cmp(theirs.items[i] as Record<string, unknown>, mine[j] as Record<string, unknown>) <= 0);
      merged.push(take ? theirs.items[i++]! : mine[j++]!);
    }
  }
  return { items: page(merged, query, true).map((r) => project(r, query.fields)), total: mine.length + theirs.total };
}

/** The envelope of a collection: `{"<plural>": [...], "meta": {"total": N}}`. */
export function collectionEnvelope<T>(plural: string, items: readonly T[], total: number): Record<string, unknown> {
  return { [plural]: items, meta: { total } };
}

/** The envelope of one item, as Buildbot sends it: a list of one and an empty meta. */
export function itemEnvelope<T>(plural: string, item: T): Record<string, unknown> {
  return { [plural]: [item], meta: {} };
}

/**
 * A success answer as Buildbot renders it: keys sorted, non-ASCII escaped,
 * compact and `application/json` when the request's Accept names
 * application/json, else indented by 2 as `text/plain` (for people in browsers).
 */
export function renderAnswer(value: unknown, accept: string | undefined): BuildbotAnswer {
  const compact = (accept ?? '').includes('application/json');
  return {
    status: 200,
    contentType: compact ? 'application/json; charset=utf-8' : 'text/plain; charset=utf-8',
    body: pythonJsonDumps(value, compact ? 'compact' : 'indent'),
  };
}

/** Python's `json.dumps` with `sort_keys=True` (compact or indent=2) or plain defaults, `ensure_ascii` on. */
export function pythonJsonDumps(value: unknown, style: 'compact' | 'indent' | 'default'): string {
  const [itemSep, keySep] = style === 'compact' ? [',', ':'] : style === 'indent' ? [',', ': '] : [', ', ': '];
  const sortKeys = style !== 'default';
  const walk = (v: unknown, depth: number): string => {
    if (v === null || v === undefined) return 'null';
    if (typeof v === 'string') return asciiJsonString(v);
    if (typeof v === 'number') return Number.isFinite(v) ? String(v) : v > 0 ? 'Infinity' : v < 0 ? '-Infinity' : 'NaN';
    if (typeof v === 'boolean') return v ? 'true' : 'false';
    const inner = style === 'indent' ? '\n' + '  '.repeat(depth + 1) : '';
    const outer = style === 'indent' ? '\n' + '  '.repeat(depth) : '';
    if (Array.isArray(v)) {
      if (v.length === 0) return '[]';
      return '[' + inner + v.map((x) => walk(x, depth + 1)).join(itemSep + inner) + outer + ']';
    }
    const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined);
    if (sortKeys) entries.sort(([a], [b]) => compareValues(a, b));
    if (entries.length === 0) return '{}';
    return '{' + inner + entries.map(([k, x]) => asciiJsonString(k) + keySep + walk(x, depth + 1)).join(itemSep + inner) + outer + '}';
  };
  return walk(value, 0);
}

/** A JSON string with every character outside printable ASCII escaped, as Python's ensure_ascii does. */
function asciiJsonString(s: string): string {
  return JSON.stringify(s).replace(/[\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}
