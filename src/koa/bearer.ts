import { createHash, timingSafeEqual } from 'node:crypto';
import type { Context, Middleware, Next } from 'koa';
import { RateLimiterMemory } from 'rate-limiter-flexible';

export interface BearerTokenOptions {
  /** The accepted token(s). Each at least 16 characters: a short admin token is guessable. */
  token: string | readonly string[];
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
  const tokens = typeof options?.token === 'string' ? [options.token] : options?.token;
  if (!Array.isArray(tokens) || tokens.length === 0 || tokens.some((t) => typeof t !== 'string' || t.length < 16)) {
    throw new TypeError('`token` must be a string of at least 16 characters (or a non-empty array of them)');
  }
  const expected = tokens.map(digest);
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
    let ok = false;
    for (const candidate of expected) ok = timingSafeEqual(given, candidate) || ok;
    if (!ok) {
      await failures.penalty(key, 1);
      ctx.set('WWW-Authenticate', `Bearer realm="${realm}", error="invalid_token"`);
      ctx.throw(403, 'the token is not valid');
    }
    await next();
  };
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}
