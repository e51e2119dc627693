import type { Context } from 'koa';
import { jsonDepth } from '../json-depth.js';

/** Largest JSON body read by default. */
export const MAX_JSON_BYTES = 64 * 1024;

/** Deepest nesting of arrays and objects accepted by default. */
export const MAX_JSON_DEPTH = 32;

/**
 * Reads a JSON object from the request: 415 unless `application/json`, 413 past `maxBytes` (read no
 * further), 422 when it is not a JSON object or nests deeper than `maxDepth` (a 64 KB body can nest
 * 30,000 levels: JSON.stringify and PostgreSQL's jsonb parser then fail with a stack overflow, a
 * 500). Errors are Koa HttpErrors (`ctx.throw`), which `problemDetails()` renders as problem+json.
 */
export async function readJsonObject(ctx: Context, maxBytes = MAX_JSON_BYTES, maxDepth = MAX_JSON_DEPTH): Promise<Record<string, unknown>> {
  if (!ctx.is('application/json')) ctx.throw(415, 'send application/json');
  const declared = Number(ctx.get('content-length') || 0);
  if (declared > maxBytes) ctx.throw(413, `the body must be at most ${maxBytes} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) ctx.throw(413, `the body must be at most ${maxBytes} bytes`);
    chunks.push(chunk as Buffer);
  }
  let value: unknown;
  try {
    value = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    ctx.throw(422, 'the body is not valid JSON');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) ctx.throw(422, 'the body must be a JSON object');
  if (jsonDepth(value) > maxDepth) ctx.throw(422, `the body must not nest deeper than ${maxDepth} levels`);
  return value as Record<string, unknown>;
}
