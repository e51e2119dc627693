import { bodyParser } from '@koa/bodyparser';
import type { Context, Middleware } from 'koa';
import { jsonDepth } from '../json-depth.js';

/** Largest JSON body read by default. */
export const MAX_JSON_BYTES = 64 * 1024;

/** Deepest nesting of arrays and objects accepted by default. */
export const MAX_JSON_DEPTH = 32;

export interface JsonBodyOptions {
  /** Largest body in bytes, after any Content-Encoding is undone (413 past it). Default 64 KB. */
  readonly maxBytes?: number;
  /** Deepest nesting of arrays and objects (422 past it). Default 32. */
  readonly maxDepth?: number;
}

type Parse = (ctx: Context, next: () => Promise<void>) => Promise<unknown>;
const parsers = new Map<number, Parse>();

/**
 * @koa/bodyparser for JSON only, with its limit, and its errors as the admin API answers them. Its
 * JSON parser (co-body, @hapi/bourne) refuses a `__proto__` key; a gzip or deflate body is
 * inflated, the limit counting the inflated bytes.
 */
function parserFor(maxBytes: number): Parse {
  let parse = parsers.get(maxBytes);
  if (!parse) {
    parse = bodyParser({
      enableTypes: ['json'],
      jsonLimit: maxBytes,
      // Any JSON value: a top-level array, string or null is refused below with a clearer message.
      jsonStrict: false,
      encoding: 'utf-8',
      parsedMethods: ['POST', 'PUT', 'PATCH', 'DELETE'],
      onError: (error, ctx) => {
        const e = error as { status?: number; type?: string; body?: unknown; message?: string };
        if (e.status === 413) {
          // The rest of the body is not read: the connection is not reused for another request.
          ctx.set('Connection', 'close');
          ctx.throw(413, `the body must be at most ${maxBytes} bytes`);
        }
        if (e.status === 415) ctx.throw(415, 'send application/json, identity, gzip, deflate or br encoded');
        if (e.body !== undefined || error instanceof SyntaxError) {
          ctx.throw(422, /prototype/.test(e.message ?? '') ? 'the body must not have a `__proto__` key' : 'the body is not valid JSON');
        }
        throw error; // aborted or truncated requests: Koa's own 400
      },
    }) as Parse;
    parsers.set(maxBytes, parse);
  }
  return parse;
}

function limits(options: JsonBodyOptions): { maxBytes: number; maxDepth: number } {
  const maxBytes = options.maxBytes ?? MAX_JSON_BYTES;
  const maxDepth = options.maxDepth ?? MAX_JSON_DEPTH;
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) throw new TypeError('`maxBytes` must be a positive integer');
  if (!Number.isSafeInteger(maxDepth) || maxDepth < 1) throw new TypeError('`maxDepth` must be a positive integer');
  return { maxBytes, maxDepth };
}

async function parseObject(ctx: Context, maxBytes: number, maxDepth: number): Promise<Record<string, unknown>> {
  if (!ctx.is('application/json')) ctx.throw(415, 'send application/json');
  await parserFor(maxBytes)(ctx, async () => undefined);
  const value = ctx.request.body;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) ctx.throw(422, 'the body must be a JSON object');
  // A 64 KB body can nest 30,000 levels: JSON.stringify and PostgreSQL's jsonb parser then fail
  // with a stack overflow, a 500. jsonDepth itself does not recurse.
  if (jsonDepth(value) > maxDepth) ctx.throw(422, `the body must not nest deeper than ${maxDepth} levels`);
  return value as Record<string, unknown>;
}

/**
 * Reads a JSON object from the request with @koa/bodyparser: 415 unless `application/json`, 413
 * past `maxBytes` (a declared Content-Length is refused before reading; otherwise reading stops
 * there), 422 when it is not valid JSON, not a JSON object, or nests deeper than `maxDepth`. The
 * object is also left in `ctx.request.body`. A body an app-wide body parser mounted earlier
 * already read is checked (object, depth), but its size limit was that parser's. Errors are Koa
 * HttpErrors (`ctx.throw`), which `problemDetails()` renders as problem+json.
 *
 * @example
 * router.post('/orders', async (ctx) => {
 *   const { item } = await readJsonObject(ctx); // 64 KB, 32 levels at most
 * });
 */
export async function readJsonObject(ctx: Context, maxBytes = MAX_JSON_BYTES, maxDepth = MAX_JSON_DEPTH): Promise<Record<string, unknown>> {
  const checked = limits({ maxBytes, maxDepth });
  return parseObject(ctx, checked.maxBytes, checked.maxDepth);
}

/**
 * readJsonObject as route middleware: the handler after it finds the object in `ctx.request.body`.
 *
 * @example
 * router.post('/orders', jsonBody({ maxBytes: 16 * 1024 }), async (ctx) => {
 *   const { item } = ctx.request.body as { item?: unknown };
 * });
 */
export function jsonBody(options: JsonBodyOptions = {}): Middleware {
  const { maxBytes, maxDepth } = limits(options);
  return async function jsonBody(ctx, next) {
    await parseObject(ctx, maxBytes, maxDepth);
    await next();
  };
}
