import { createHash, timingSafeEqual } from 'node:crypto';
import type { Context, Middleware, Next } from 'koa';
import { RateLimiterMemory } from 'rate-limiter-flexible';
import { isAuditActor } from '../audit.js';

/** A token with the name the audit log records for its requests (`ctx.state.actor`). */
export interface NamedToken {
  readonly token: string;
  /** 1 to 200 printable characters, e.g. `ops:jane` or `deploy-bot`. */
  readonly actor: string;
}

export interface BearerTokenOptions {
  /**
   * The accepted token(s). Each at least 16 characters: a short admin token is guessable. A named
   * token (`{ token, actor }`) sets `ctx.state.actor` to its actor (the admin routers' audit
   * actor); a plain one sets `admin`.
   */
  token: string | readonly (string | NamedToken)[];
  /** Failed attempts allowed per client address within `windowSeconds`; then 429 until the window ends. Default 10. */
  maxFailures?: number;
  /** Default 60. */
  windowSeconds?: number;
  /** Sent in `WWW-Authenticate`. Default `admin`. */
  realm?: string;
}

// RFC 6750 b64token, after the scheme "Bearer" (case-insensitive) and one or more spaces.
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*)$/i;

/**
 * Admits requests carrying `Authorization: Bearer <token>` with one of the configured tokens: 401
 * without it (or with another scheme, or a bare token), 403 with a wrong one, 429 after
 * `maxFailures` failed attempts from one client address in a window (checked before comparing, so a
 * guessing client learns nothing more). Tokens are compared as SHA-256 digests with
 * `timingSafeEqual`: the time taken depends neither on where the strings differ nor on the length of
 * the guess. Client addresses are `ctx.ip` (X-Forwarded-For only when Koa's `app.proxy` is set).
 *
 * @example
 * app.use(createAdminRouter(admin, { authorize: requireBearerToken({ token: process.env.ADMIN_TOKEN! }) }).routes());
 */
export function requireBearerToken(options: BearerTokenOptions): Middleware {
  const given = typeof options?.token === 'string' ? [options.token] : options?.token;
  if (!Array.isArray(given) || given.length === 0) throw new TypeError('`token` must be a string of at least 16 characters (or a non-empty array of them)');
  const tokens = given.map((t: string | NamedToken) => (typeof t === 'string' ? { token: t, actor: 'admin' } : t));
  if (tokens.some((t) => typeof t?.token !== 'string' || t.token.length < 16)) {
    throw new TypeError('`token` must be a string of at least 16 characters (or a non-empty array of them)');
  }
  // The audit log's own rule: an actor it would refuse made every request of the token a 422.
  if (tokens.some((t) => !isAuditActor(t.actor))) {
    throw new TypeError('a named token\'s `actor` must be 1 to 200 printable characters');
  }
  const expected = tokens.map((t) => digest(t.token));
  const maxFailures = options.maxFailures ?? 10;
  const windowSeconds = options.windowSeconds ?? 60;
  if (!Number.isSafeInteger(maxFailures) || maxFailures < 1) throw new TypeError('`maxFailures` must be a positive integer');
  if (!Number.isSafeInteger(windowSeconds) || windowSeconds < 1) throw new TypeError('`windowSeconds` must be a positive integer');
  const realm = options.realm ?? 'admin';
  if (!/^[\x20-\x7e]*$/.test(realm) || realm.includes('"')) throw new TypeError('`realm` must be printable ASCII without quotes');
  const failures = new RateLimiterMemory({ points: maxFailures, duration: windowSeconds });

  return async function requireBearerToken(ctx: Context, next: Next) {
    const key = ctx.ip || 'unknown';
    const seen = await failures.get(key);
    if (seen && seen.remainingPoints <= 0) {
      ctx.set('Retry-After', String(Math.max(1, Math.ceil(seen.msBeforeNext / 1000))));
      ctx.throw(429, 'too many failed attempts; try again later');
    }
    const header = ctx.get('authorization');
    const match = BEARER.exec(header);
    if (!match) {
      await failures.penalty(key, 1);
      ctx.set('WWW-Authenticate', `Bearer realm="${realm}"`);
      ctx.throw(401, 'send Authorization: Bearer <token>');
    }
    const given = digest(match[1]!);
    // Every token compared, so the time does not say which one (or whether the first) matched.
    let matched = -1;
    for (const [i, candidate] of expected.entries()) if (timingSafeEqual(given, candidate) && matched === -1) matched = i;
    if (matched === -1) {
      await failures.penalty(key, 1);
      ctx.set('WWW-Authenticate', `Bearer realm="${realm}", error="invalid_token"`);
      ctx.throw(403, 'the token is not valid');
    }
    ctx.state.actor = tokens[matched]!.actor;
    await next();
  };
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}
