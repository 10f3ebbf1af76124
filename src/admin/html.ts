/**
 * SECURITY: the one HTML escape of the status page and its charts. Job
 * types, rule patterns, URLs and error messages come from routes.yaml and
 * from client requests; every value goes through `esc()` before it reaches
 * the HTML.
 */

/** HTML-escapes text for element content and quoted attribute values alike. */
export function esc(value: unknown): string {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}
