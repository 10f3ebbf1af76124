/**
 * The queue's error answers: one table from code to status, and the body
 * `{code, message, requestInfo}` with the message trailer the real queue adds.
 */

export const ERROR_STATUS = {
  MalformedPayload: 400,
  InvalidRequestArguments: 400,
  InputValidationError: 400,
  InputError: 400,
  AuthenticationFailed: 401,
  InsufficientScopes: 403,
  ResourceNotFound: 404,
  RequestConflict: 409,
  ResourceExpired: 410,
  InputTooLarge: 413,
  InternalServerError: 500,
} as const;

export type QueueErrorCode = keyof typeof ERROR_STATUS;

/** An error the stand-in answers as the queue would; `details` fill `{{name}}` in the message. */
export class QueueError extends Error {
  constructor(
    readonly code: QueueErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'QueueError';
  }

  get status(): number {
    return ERROR_STATUS[this.code];
  }
}

export interface RequestInfo {
  method: string;
  params: Record<string, string>;
  payload: unknown;
  time: string;
}

/** The JSON body for an error, with `{{key}}` filled from details and the queue's trailer. */
export function errorBody(err: QueueError, info: RequestInfo): { code: string; message: string; requestInfo: RequestInfo } {
  const filled = err.message.replace(/{{([a-zA-Z0-9_-]+)}}/g, (text, key: string) => {
    if (!(key in err.details)) return text;
    const value = err.details[key];
    return typeof value === 'string' ? value : JSON.stringify(value, null, 2);
  });
  const message =
    filled +
    [
      '\n\n---\n',
      `* method:     ${info.method}`,
      `* errorCode:  ${err.code}`,
      `* statusCode: ${err.status}`,
      `* time:       ${info.time}`,
    ].join('\n');
  return { code: err.code, message, requestInfo: info };
}
