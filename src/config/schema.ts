/**
 * The shape of routes.yaml, as a JSON schema checked by ajv. Only the shape
 * lives here; rules that relate one field to another (a route naming a backend
 * that exists, exactly one legacy backend, ...) are in compile.ts.
 */
import { Ajv, type ErrorObject, type JSONSchemaType } from 'ajv';

export interface RawHealth {
  path?: string;
  intervalMs?: number;
  timeoutMs?: number;
  healthyThreshold?: number;
  unhealthyThreshold?: number;
}

export interface RawCircuit {
  failureThreshold?: number;
  coolDownMs?: number;
}

export interface RawQueueCredentials {
  clientIdEnv?: string;
  accessTokenEnv?: string;
  certificateEnv?: string;
}

export interface RawBackend {
  /** `buildbot` (the default): a service that answers Buildbot's API. `taskcluster`: a Taskcluster queue the proxy translates for. */
  kind?: 'buildbot' | 'taskcluster';
  url?: string;
  /** A Taskcluster deployment's root URL (kind taskcluster); the queue is at <rootUrl>/api/queue/v1. */
  rootUrl?: string;
  /** Where the queue's credentials are read from: names of environment variables, never the secrets themselves. */
  credentials?: RawQueueCredentials;
  /** The task template (json-e) for job types this backend runs. */
  task?: Record<string, unknown>;
  health?: RawHealth;
  circuit?: RawCircuit;
  legacy?: boolean;
  connectTimeoutMs?: number;
  responseTimeoutMs?: number;
  bodyIdleTimeoutMs?: number;
  preserveHost?: boolean;
}

export interface RawShadow {
  backend: string;
  percent?: number;
  mutating?: boolean;
  ignoreFields?: string[];
}

export interface RawRoute {
  jobType: string;
  backend?: string;
  split?: Record<string, number>;
  stickyBy?: string[];
  shadow?: string | RawShadow;
  fallback?: string;
  retries?: number;
  /** Follow every build of this route's job types on the legacy master, not only forces that went through the proxy. */
  track?: boolean;
  /** A task template for this route's job types on a taskcluster backend, over the backend's own. */
  task?: Record<string, unknown>;
}

export interface RawShadowSettings {
  maxInFlight?: number;
  maxBodyBytes?: number;
  timeoutMs?: number;
  mismatchLogsPerMinute?: number;
}

export interface RawSettings {
  bodyPeekLimitBytes?: number;
  maxOtherJobTypeLabels?: number;
  shadow?: RawShadowSettings;
}

export interface RawConfig {
  backends: Record<string, RawBackend>;
  default?: string;
  routes?: RawRoute[];
  settings?: RawSettings;
}

export const BACKEND_NAME_PATTERN = '^[A-Za-z][A-Za-z0-9_-]{0,62}$';
/** `header:NAME`, `query:NAME` or `param:NAME` (a JSON-RPC param of a force call). */
export const STICKY_SOURCE_PATTERN = '^(header|query|param):[A-Za-z0-9_.-]{1,128}$';

/** The name of an environment variable. */
export const ENV_NAME_PATTERN = '^[A-Za-z_][A-Za-z0-9_]{0,127}$';

const timeout = { type: 'integer', minimum: 1, maximum: 3_600_000, nullable: true } as const;

export const CONFIG_SCHEMA: JSONSchemaType<RawConfig> = {
  type: 'object',
  additionalProperties: false,
  required: ['backends'],
  properties: {
    backends: {
      type: 'object',
      minProperties: 1,
      maxProperties: 64,
      propertyNames: { type: 'string', pattern: BACKEND_NAME_PATTERN },
      required: [],
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        required: [],
        properties: {
          kind: { type: 'string', enum: ['buildbot', 'taskcluster'], nullable: true },
          url: { type: 'string', minLength: 1, maxLength: 2048, nullable: true },
          rootUrl: { type: 'string', minLength: 1, maxLength: 2048, nullable: true },
          credentials: {
            type: 'object',
            nullable: true,
            additionalProperties: false,
            properties: {
              clientIdEnv: { type: 'string', pattern: ENV_NAME_PATTERN, nullable: true },
              accessTokenEnv: { type: 'string', pattern: ENV_NAME_PATTERN, nullable: true },
              certificateEnv: { type: 'string', pattern: ENV_NAME_PATTERN, nullable: true },
            },
          },
          task: { type: 'object', nullable: true, required: [] },
          legacy: { type: 'boolean', nullable: true },
          connectTimeoutMs: timeout,
          responseTimeoutMs: timeout,
          bodyIdleTimeoutMs: { type: 'integer', minimum: 0, maximum: 86_400_000, nullable: true },
          preserveHost: { type: 'boolean', nullable: true },
          health: {
            type: 'object',
            nullable: true,
            additionalProperties: false,
            properties: {
              path: { type: 'string', pattern: '^/', maxLength: 1024, nullable: true },
              intervalMs: { type: 'integer', minimum: 0, maximum: 3_600_000, nullable: true },
              timeoutMs: timeout,
              healthyThreshold: { type: 'integer', minimum: 1, maximum: 100, nullable: true },
              unhealthyThreshold: { type: 'integer', minimum: 1, maximum: 100, nullable: true },
            },
          },
          circuit: {
            type: 'object',
            nullable: true,
            additionalProperties: false,
            properties: {
              failureThreshold: { type: 'integer', minimum: 0, maximum: 10_000, nullable: true },
              coolDownMs: { type: 'integer', minimum: 1, maximum: 3_600_000, nullable: true },
            },
          },
        },
      },
    },
    default: { type: 'string', nullable: true },
    routes: {
      type: 'array',
      nullable: true,
      maxItems: 50_000,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['jobType'],
        properties: {
          jobType: { type: 'string', minLength: 1, maxLength: 1024 },
          backend: { type: 'string', nullable: true },
          split: {
            type: 'object',
            nullable: true,
            minProperties: 1,
            required: [],
            additionalProperties: { type: 'number', minimum: 0, maximum: 1_000_000 },
          },
          stickyBy: {
            type: 'array',
            nullable: true,
            minItems: 1,
            maxItems: 16,
            items: { type: 'string', pattern: STICKY_SOURCE_PATTERN },
          },
          shadow: {
            // JSONSchemaType cannot express "string or object" here; compile.ts checks the shape.
            type: ['string', 'object'] as unknown as 'string',
            nullable: true,
          } as never,
          fallback: { type: 'string', nullable: true },
          retries: { type: 'integer', minimum: 0, maximum: 5, nullable: true },
          track: { type: 'boolean', nullable: true },
          task: { type: 'object', nullable: true, required: [] },
        },
      },
    },
    settings: {
      type: 'object',
      nullable: true,
      additionalProperties: false,
      properties: {
        bodyPeekLimitBytes: { type: 'integer', minimum: 0, maximum: 64 * 1024 * 1024, nullable: true },
        maxOtherJobTypeLabels: { type: 'integer', minimum: 0, maximum: 10_000, nullable: true },
        shadow: {
          type: 'object',
          nullable: true,
          additionalProperties: false,
          properties: {
            maxInFlight: { type: 'integer', minimum: 0, maximum: 100_000, nullable: true },
            maxBodyBytes: { type: 'integer', minimum: 0, maximum: 64 * 1024 * 1024, nullable: true },
            timeoutMs: timeout,
            mismatchLogsPerMinute: { type: 'integer', minimum: 0, maximum: 10_000, nullable: true },
          },
        },
      },
    },
  },
};

// verbose: errors carry their parentSchema, which lists the keys allowed where an unknown one was found.
const ajv = new Ajv({ allErrors: true, strict: true, verbose: true, allowUnionTypes: true });
export const validateShape = ajv.compile(CONFIG_SCHEMA);

export type PathSegment = string | number;

/** One thing wrong with a config: where (as a path into the document) and what was expected. */
export interface Problem {
  path: PathSegment[];
  message: string;
  /** Point at the key itself rather than its value (for unknown keys). */
  atKey?: boolean;
}

const EXAMPLES: Record<string, string> = {
  backends: 'backends: { buildbot: { url: http://127.0.0.1:8011, legacy: true }, taskservice: { url: http://127.0.0.1:8012 } }',
  url: 'url: http://127.0.0.1:8011',
  jobType: 'jobType: linux64-*   (an exact name, a glob, or /a regex/)',
};

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)}`;
  return `${typeof value} ${String(value)}`;
}

function pathOf(instancePath: string): PathSegment[] {
  if (instancePath === '') return [];
  return instancePath
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

function valueAt(root: unknown, path: PathSegment[]): unknown {
  let current: unknown = root;
  for (const segment of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string, unknown>)[segment as string];
  }
  return current;
}

/** Turns ajv's errors into problems a person can act on, each naming the expected form. */
export function shapeProblems(errors: readonly ErrorObject[], root: unknown): Problem[] {
  const problems: Problem[] = [];
  for (const error of errors) {
    const path = pathOf(error.instancePath);
    const actual = valueAt(root, path);
    switch (error.keyword) {
      case 'additionalProperties': {
        const key = String(error.params.additionalProperty);
        const allowed = Object.keys((error.parentSchema as { properties?: object }).properties ?? {});
        problems.push({ path: [...path, key], atKey: true, message: `unknown key "${key}"; expected one of: ${allowed.join(', ')}` });
        break;
      }
      case 'required': {
        const field = String(error.params.missingProperty);
        const example = EXAMPLES[field];
        problems.push({ path, message: `missing required field "${field}"${example ? `. Example: ${example}` : ''}` });
        break;
      }
      case 'type':
        problems.push({ path, message: `expected ${article(String(error.params.type))}, got ${describe(actual)}` });
        break;
      case 'pattern':
        if (error.propertyName === undefined) {
          const expected =
            error.params.pattern === STICKY_SOURCE_PATTERN ? 'header:NAME, query:NAME or param:NAME' : error.params.pattern === ENV_NAME_PATTERN ? 'the name of an environment variable' : 'a path starting with "/"';
          problems.push({ path, message: `expected ${expected}, got ${describe(actual)}` });
        } else {
          problems.push({
            path: [...path, error.propertyName],
            atKey: true,
            message: `backend name "${error.propertyName}" is not allowed; expected letters, digits, "-" or "_", starting with a letter`,
          });
        }
        break;
      case 'propertyNames':
        break; // reported through its 'pattern' error, which names the key
      case 'maxProperties':
        problems.push({ path, message: `expected at most ${error.params.limit} backends` });
        break;
      case 'maxItems':
        problems.push({ path, message: `expected at most ${error.params.limit} entries` });
        break;
      case 'minProperties':
        problems.push({ path, message: path.at(-1) === 'split' ? 'expected at least one backend with a weight' : 'expected at least one backend' });
        break;
      case 'minimum':
      case 'maximum':
        problems.push({ path, message: `expected a number ${error.params.comparison} ${error.params.limit}, got ${describe(actual)}` });
        break;
      case 'enum':
        problems.push({ path, message: `expected one of: ${(error.params.allowedValues as unknown[]).join(', ')}, got ${describe(actual)}` });
        break;
      case 'minLength':
        problems.push({ path, message: 'expected a non-empty string' });
        break;
      case 'maxLength':
        problems.push({ path, message: `expected at most ${error.params.limit} characters` });
        break;
      default:
        problems.push({ path, message: error.message ?? 'invalid value' });
    }
  }
  return problems;
}

function article(type: string): string {
  switch (type) {
    case 'object':
      return 'a mapping';
    case 'array':
      return 'a list';
    case 'integer':
      return 'a whole number';
    default:
      return `a ${type}`;
  }
}
