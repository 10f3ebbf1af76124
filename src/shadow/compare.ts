/**
 * Compares the primary's answer with the shadow's: status first, then, when
 * both bodies are JSON, the documents with the configured fields (ids,
 * timestamps) left out at any depth. Pure.
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
  /** What was compared: the status alone when a body was not JSON or too large. */
  compared: 'status' | 'json' | 'bytes';
  differences: Difference[];
}

const MAX_DIFFERENCES = 20;

export function compareResponses(primary: CapturedResponse, shadow: CapturedResponse, ignoreFields: ReadonlySet<string>): Comparison {
  const differences: Difference[] = [];
  if (primary.status !== shadow.status) differences.push({ path: '(status)', primary: primary.status, shadow: shadow.status });
  if (primary.body === undefined || shadow.body === undefined) return { match: differences.length === 0, compared: 'status', differences };
  // The same bytes are the same document, whatever fields are ignored: no need to parse (the common case, and the cheap one).
  if (differences.length === 0 && primary.body.equals(shadow.body)) return { match: true, compared: isJson(primary.contentType) && isJson(shadow.contentType) ? 'json' : 'bytes', differences };

  if (isJson(primary.contentType) && isJson(shadow.contentType)) {
    const a = parse(primary.body);
    const b = parse(shadow.body);
    if (a.ok && b.ok) {
      diff(a.value, b.value, '', ignoreFields, differences);
      return { match: differences.length === 0, compared: 'json', differences };
    }
  }
  if (!primary.body.equals(shadow.body)) differences.push({ path: '(body)', primary: `${primary.body.length} bytes`, shadow: `${shadow.body.length} bytes` });
  return { match: differences.length === 0, compared: 'bytes', differences };
}

function isJson(contentType: string | undefined): boolean {
  return contentType !== undefined && /\bjson\b/i.test(contentType);
}

function parse(body: Buffer): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(body.toString('utf8')) };
  } catch {
    return { ok: false };
  }
}

function diff(a: unknown, b: unknown, path: string, ignore: ReadonlySet<string>, out: Difference[], depth = 0): void {
  if (out.length >= MAX_DIFFERENCES) return;
  if (depth > 64) {
    if (JSON.stringify(a) !== JSON.stringify(b)) out.push({ path: path || '(root)', primary: '(deep)', shadow: '(deep)' });
    return;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) out.push({ path: `${path}.length`, primary: a.length, shadow: b.length });
    for (let i = 0; i < Math.min(a.length, b.length); i++) diff(a[i], b[i], `${path}[${i}]`, ignore, out, depth + 1);
    return;
  }
  if (isObject(a) && isObject(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const key of keys) {
      if (ignore.has(key)) continue;
      const here = path ? `${path}.${key}` : key;
      if (!Object.hasOwn(a, key) || !Object.hasOwn(b, key)) out.push({ path: here, primary: a[key], shadow: b[key] });
      else diff(a[key], b[key], here, ignore, out, depth + 1);
    }
    return;
  }
  if (!Object.is(a, b)) out.push({ path: path || '(root)', primary: a, shadow: b });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
