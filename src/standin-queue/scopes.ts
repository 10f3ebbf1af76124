/**
 * Scope expressions as the Taskcluster queue checks them: a held scope ending
 * in `*` grants every scope it prefixes, a required expression is a string or
 * `{AllOf: [...]}` / `{AnyOf: [...]}`. Pure functions, no I/O.
 */

export type ScopeExpression = string | { AllOf: ScopeExpression[] } | { AnyOf: ScopeExpression[] };

/** Queue priorities from highest to lowest; a scope for a higher one also allows creating lower ones. */
export const PRIORITY_LEVELS = ['highest', 'very-high', 'high', 'medium', 'low', 'very-low', 'lowest'] as const;
export type Priority = (typeof PRIORITY_LEVELS)[number];

/**
 * Does one held scope grant `required`?
 *
 * @example scopeMatches('queue:create-task:*', 'queue:create-task:lowest:a/b') // true
 */
export function scopeMatches(held: string, required: string): boolean {
  // SECURITY: only a trailing `*` is a wildcard; a `*` anywhere else is a literal character.
  if (held.endsWith('*')) return required.startsWith(held.slice(0, -1));
  return held === required;
}

/** Whether the held scopes satisfy the expression. */
export function satisfies(held: readonly string[], expr: ScopeExpression): boolean {
  if (typeof expr === 'string') return held.some((h) => scopeMatches(h, expr));
  if ('AllOf' in expr) return expr.AllOf.every((e) => satisfies(held, e));
  return expr.AnyOf.some((e) => satisfies(held, e));
}

/**
 * The part of `expr` the held scopes do not satisfy (what the 403 names), or
 * null when it is satisfied.
 */
export function unsatisfied(held: readonly string[], expr: ScopeExpression): ScopeExpression | null {
  if (typeof expr === 'string') return satisfies(held, expr) ? null : expr;
  if ('AllOf' in expr) {
    const rest = expr.AllOf.map((e) => unsatisfied(held, e)).filter((e): e is ScopeExpression => e !== null);
    if (rest.length === 0) return null;
    return rest.length === 1 ? (rest[0] as ScopeExpression) : { AllOf: rest };
  }
  if (satisfies(held, expr)) return null;
  const rest = expr.AnyOf.map((e) => unsatisfied(held, e)).filter((e): e is ScopeExpression => e !== null);
  return rest.length === 1 ? (rest[0] as ScopeExpression) : { AnyOf: rest };
}

/** Renders an expression the way the queue's error messages show it. */
export function formatExpression(expr: ScopeExpression): string {
  return typeof expr === 'string' ? expr : JSON.stringify(expr, null, 2);
}

/** The fields of a task definition that createTask's scopes depend on. */
export interface CreateTaskScopeInput {
  taskQueueId: string;
  schedulerId: string;
  projectId: string;
  priority: string;
  routes: readonly string[];
  scopes: readonly string[];
}

/**
 * The expression createTask requires: every scope the task will carry, one
 * `queue:route:<route>` per route, the project, the scheduler, and the
 * priority on the task queue (any priority at or above the task's).
 */
export function createTaskScopes(def: CreateTaskScopeInput): ScopeExpression {
  const index = PRIORITY_LEVELS.indexOf(def.priority as Priority);
  const priorities = PRIORITY_LEVELS.slice(0, index < 0 ? PRIORITY_LEVELS.length : index + 1);
  return {
    AllOf: [
      ...def.scopes,
      ...def.routes.map((r) => `queue:route:${r}`),
      `queue:create-task:project:${def.projectId}`,
      `queue:scheduler-id:${def.schedulerId}`,
      { AnyOf: priorities.map((p) => `queue:create-task:${p}:${def.taskQueueId}`) },
    ],
  };
}

/** The fields of a stored task that the task-manipulation scopes depend on. */
export interface TaskScopeInput {
  taskId: string;
  schedulerId: string;
  taskGroupId: string;
  projectId: string;
}

/** cancelTask and rerunTask accept the per-task scope, the per-project one, or the legacy pair. */
export function manipulateTaskScopes(verb: 'cancel-task' | 'rerun-task', t: TaskScopeInput): ScopeExpression {
  return {
    AnyOf: [
      `queue:${verb}:${t.schedulerId}/${t.taskGroupId}/${t.taskId}`,
      `queue:${verb}-in-project:${t.projectId}`,
      { AllOf: [`queue:${verb}`, `assume:scheduler-id:${t.schedulerId}/${t.taskGroupId}`] },
    ],
  };
}
