/**
 * Compares the primary's answer with the shadow's: status first, then the
 * bodies. When both bodies parse as JSON, whatever their content type says
 * (Buildbot 3.7 serves its REST data as `text/plain`, and a queue's
 * translation answers the same way), the two documents are compared value by
 * value with the configured fields (ids, timestamps) left out at any depth;
 * otherwise the bodies are compared byte for byte. Pure, and it never throws:
 * both bodies come from backends, and a shadow backend may answer anything.
 */

export interface CapturedResponse {
  status: number;
  contentType: string | undefined;
  /** Undefined when the body was larger than the capture limit. */
  body: Buffer | undefined;
}

export interface Difference {
  /** JSON path such as `builds[0].state_string`, or `(status)` / `(body)`. */
  path: string;
  primary: unknown;
  shadow: unknown;
}

export interface Comparison {
  match: boolean;
  /**
   * How the bodies were compared: `json` when both parsed as JSON, `bytes`
   * when one did not (or both were the same bytes, which needs no parsing),
   * `status` alone when a body was over the capture limit.
   */
  compared: 'status' | 'json' | 'bytes';
  differences: Difference[];
}

const MAX_DIFFERENCES = 20;
/** A path longer than this is cut (a hostile document can nest as deep as its size allows). */
const MAX_PATH = 300;

export function compareResponses(primary: CapturedResponse, shadow: CapturedResponse, ignoreFields: ReadonlySet<string>): Comparison {
  const differences: Difference[] = [];
  if (primary.status !== shadow.status) differences.push({ path: '(status)', primary: primary.status, shadow: shadow.status });
  if (primary.body === undefined || shadow.body === undefined) return { match: differences.length === 0, compared: 'status', differences };
  // The same bytes are the same document, whatever fields are ignored: no need to parse (the common case, and the cheap one).
  if (primary.body.equals(shadow.body)) return { match: differences.length === 0, compared: 'bytes', differences };

  // Only bodies the capture limit let through get here, so what is parsed is bounded by it.
  const a = parseJson(primary.body);
  const b = parseJson(shadow.body);
  if (a !== undefined && b !== undefined) {
    diffDocuments(a.value, b.value, ignoreFields, differences);
    return { match: differences.length === 0, compared: 'json', differences };
  }
  differences.push({ path: '(body)', primary: describe(primary.body, a !== undefined), shadow: describe(shadow.body, b !== undefined) });
  return { match: false, compared: 'bytes', differences };
}

function describe(body: Buffer, json: boolean): string {
  return `${body.length} bytes${json ? ' of JSON' : ''}`;
}

/** `fatal`: a body that is not valid UTF-8 is not JSON (lenient decoding would turn different bytes into the same U+FFFD). */
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The first byte a JSON text can start with after whitespace: `{ [ " - 0-9 t f n`. */
const JSON_START = new Set([...'{["-0123456789tfn'].map((c) => c.charCodeAt(0)));
const JSON_SPACE = new Set([0x20, 0x09, 0x0a, 0x0d]);

/** The body as a JSON value, or undefined when it is not JSON (empty, text, not UTF-8, broken). */
function parseJson(body: Buffer): { value: unknown } | undefined {
  let start = 0;
  while (start < body.length && JSON_SPACE.has(body[start]!)) start++;
  // Text such as a raw log is told apart at its first byte, without decoding it whole.
  if (start === body.length || !JSON_START.has(body[start]!)) return undefined;
  try {
    // JSON.parse keeps a `__proto__` key as an own property (it never sets a prototype), and V8's parser does not recurse.
    return { value: JSON.parse(utf8.decode(body)) };
  } catch {
    return undefined;
  }
}

/** Stands for a key one side does not have. */
const ABSENT = Symbol('absent');

/**
 * Depth first, in the primary's key order, with a stack of its own rather
 * than recursion, so a document nested thousands deep cannot overflow the
 * call stack. Values are compared as JSON means them: numbers by value
 * (`1.0` is `1`; both are doubles once parsed), objects whatever their key order.
 */
function diffDocuments(primary: unknown, shadow: unknown, ignore: ReadonlySet<string>, out: Difference[]): void {
  const pending: Array<[unknown, unknown, string]> = [[primary, shadow, '']];
  while (pending.length > 0 && out.length < MAX_DIFFERENCES) {
    const [a, b, path] = pending.pop()!;
    if (a === ABSENT || b === ABSENT) {
      out.push({ path, primary: a === ABSENT ? undefined : a, shadow: b === ABSENT ? undefined : b });
    } else if (Array.isArray(a) && Array.isArray(b)) {
      if (a.length !== b.length) out.push({ path: `${path}.length`, primary: a.length, shadow: b.length });
      for (let i = Math.min(a.length, b.length) - 1; i >= 0; i--) pending.push([a[i], b[i], childPath(path, `[${i}]`)]);
    } else if (isObject(a) && isObject(b)) {
      const keys = Object.keys(a);
      for (const key of Object.keys(b)) if (!Object.hasOwn(a, key)) keys.push(key);
      for (let i = keys.length - 1; i >= 0; i--) {
        const key = keys[i]!;
        if (ignore.has(key)) continue;
        // Own properties only: `constructor` or `__proto__` missing on one side is absent, not Object.prototype's.
        pending.push([Object.hasOwn(a, key) ? a[key] : ABSENT, Object.hasOwn(b, key) ? b[key] : ABSENT, childPath(path, path ? `.${key}` : key)]);
      }
    } else if (a !== b) {
      out.push({ path: path || '(root)', primary: a, shadow: b });
    }
  }
}

function childPath(path: string, step: string): string {
  if (path.length > MAX_PATH) return path; // already cut
  const joined = path + step;
  return joined.length <= MAX_PATH ? joined : `${joined.slice(0, MAX_PATH)}…`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
