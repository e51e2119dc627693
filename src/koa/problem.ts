import type { Context, Middleware } from 'koa';
import { TenantError, TenantInputError } from '../errors.js';

/** RFC 9457 problem details. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  /** The library's stable error code, when the problem is a TenantError. */
  code?: string;
  /** Each refused field of an invalid input (RFC 9457 §3's example extension): `pointer` is `#/<field>`. */
  errors?: Array<{ detail: string; pointer: string }>;
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
};

/** Writes a problem+json response. */
export function sendProblem(ctx: Context, status: number, detail?: string, code?: string, errors?: Problem['errors']): void {
  const body: Problem = { type: 'about:blank', title: TITLES[status] ?? 'Error', status };
  if (detail) body.detail = detail;
  if (code) body.code = code;
  if (errors?.length) body.errors = errors;
  ctx.status = status;
  ctx.type = 'application/problem+json';
  ctx.body = body;
}

/**
 * Maps an error to a problem: a TenantError keeps its status and code, and its message only when
 * it is safe to show (`expose`), also when it is the `cause` of another error (a query builder's wrapper); a Koa HttpError (`ctx.throw(422, ...)`) keeps status and its
 * exposed message; everything else is a 500 that says nothing about internals. The server's own
 * error text (which can carry other tenants' values in a DETAIL) never reaches the response.
 */
export function problemFor(error: unknown): { status: number; detail?: string; code?: string; errors?: Problem['errors'] } {
  if (error instanceof TenantInputError && error.issues.length > 0) {
    const errors = error.issues.map((issue) => ({ detail: issue.message, pointer: `#/${issue.field.replaceAll('.', '/')}` }));
    return { status: error.status, detail: error.message, code: error.code, errors };
  }
  if (error instanceof TenantError) return { status: error.status, detail: error.expose ? error.message : undefined, code: error.code };
  // A query builder's wrapper of the library's error (Drizzle's DrizzleQueryError, whose message
  // quotes the parameters) answers as the library's error.
  const cause = (error as { cause?: unknown } | null)?.cause;
  if (cause instanceof TenantError) return problemFor(cause);
  const e = error as { status?: unknown; expose?: unknown; message?: unknown; code?: unknown; severity?: unknown };
  if (typeof e?.status === 'number' && e.status >= 400 && e.status < 600) {
    return { status: e.status, detail: e.expose === true && typeof e.message === 'string' ? e.message : undefined };
  }
  // PostgreSQL's class 22 (data exception: a number out of range, NUL or bad bytes in text, a
  // malformed value) comes from a value the request sent: the request is wrong, not the server.
  // The server's text is not shown (it can quote the value).
  if (typeof e?.code === 'string' && e.code.startsWith('22') && e.code.length === 5 && typeof e.severity === 'string') {
    return { status: 422, detail: `the database refused a value of the request (SQLSTATE ${e.code})`, code: 'LBMT_DATA_INVALID' };
  }
  return { status: 500 };
}

/** `Retry-After` from a TenantError that says when to come back (TenantMovingError, TenantRateLimitedError, TenantLimitError). */
export function setRetryAfter(ctx: Context, error: unknown): void {
  const seconds = error instanceof TenantError ? (error as { retryAfterSeconds?: unknown }).retryAfterSeconds : undefined;
  if (typeof seconds === 'number' && Number.isFinite(seconds) && seconds >= 0) ctx.set('Retry-After', String(Math.ceil(seconds)));
}

/**
 * Renders every error below it as problem+json. Mount it first. Unexpected errors are emitted on
 * the app (`app.on('error')`) for logging, as Koa does.
 */
export function problemDetails(): Middleware {
  return async function problemDetails(ctx, next) {
    try {
      await next();
    } catch (error) {
      const problem = problemFor(error);
      sendProblem(ctx, problem.status, problem.detail, problem.code, problem.errors);
      setRetryAfter(ctx, error);
      if (problem.status >= 500 && problem.status !== 503) ctx.app.emit('error', error, ctx);
    }
  };
}
