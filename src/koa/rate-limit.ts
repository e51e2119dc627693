import { createHash } from 'node:crypto';
import type { Context, Middleware } from 'koa';
import { RateLimiterMemory, RateLimiterPostgres, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Tenant } from '../tenants.js';
import { sendProblem } from './problem.js';
import { TenantRateLimitedError } from '../errors.js';

/** `points` requests per `durationSeconds` (a fixed window that starts with the key's first request). */
export interface RateLimit {
  points: number;
  durationSeconds: number;
}

/**
 * Counters in a PostgreSQL table, shared by every instance of the app (rate-limiter-flexible's
 * RateLimiterPostgres). The table is NOT created at run time: the app role should not be able to
 * create tables. Create it with `rateLimitTableSql({ role })` in a migration run by the owner role.
 */
export interface PostgresRateLimitStore {
  /** A pool as the app role, e.g. the app's pg.Pool: one statement per limited request. */
  pool: { query(config: { text: string; values?: unknown[] }): Promise<unknown> };
  /** Default `linkbay` (the registry's schema: the app role already has USAGE on it). */
  schema?: string;
  /** Default `rate_limits`. */
  table?: string;
}

export interface TenantRateLimitOptions extends RateLimit {
  /** Where counters live. Default `'memory'`: per process, so N instances allow N times the limit. */
  store?: 'memory' | PostgresRateLimitStore;
  /**
   * What is counted. Default `'tenant'`: one bucket per tenant (canonical id). `'tenant+ip'`: per
   * tenant and client address (`ctx.ip`, which honours X-Forwarded-For only with `app.proxy`). A
   * function returns a key that is scoped to the tenant: `<tenant id>|<your key>`.
   */
  key?: 'tenant' | 'tenant+ip' | ((ctx: Context) => string);
  /** The limit of one tenant, e.g. by `tenant.plan`; `undefined` means the default (`points`, `durationSeconds`). */
  limitsFor?: (tenant: Tenant) => RateLimit | undefined;
}

// Each distinct limit has its own limiter (and so its own buckets); limitsFor can return many.
const MAX_LIMITERS = 256;
const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Per-tenant rate limiting for Koa. Mount it AFTER `multitenant()`: it counts requests by
 * `ctx.state.tenant.id`, so every spelling of one tenant id shares one bucket. A request without
 * a tenant (a public route under `multitenant({ optional: true })`) is not limited here: put an
 * IP-based limiter in front of public routes. Allowed responses carry `RateLimit-Limit`,
 * `RateLimit-Remaining` and `RateLimit-Reset` (seconds); a refused one is a 429 problem+json with
 * `Retry-After` (seconds) and code `LBMT_RATE_LIMITED`. A failing store (PostgreSQL unreachable,
 * table missing) is an error, not a free pass: it reaches your error handler (a 500).
 *
 * @example
 * app.use(multitenant({ core }));
 * app.use(tenantRateLimit({
 *   points: 100, durationSeconds: 60,
 *   store: { pool: appPool },
 *   limitsFor: (tenant) => (tenant.plan === 'enterprise' ? { points: 1_000, durationSeconds: 60 } : undefined),
 * }));
 */
export function tenantRateLimit(options: TenantRateLimitOptions): Middleware {
  const defaults = checkLimit({ points: options?.points, durationSeconds: options?.durationSeconds }, 'options');
  const store = options.store ?? 'memory';
  if (store !== 'memory') {
    if (!store?.pool || typeof store.pool.query !== 'function') throw new TypeError('`store.pool` must be a pg Pool (something with query())');
    for (const name of ['schema', 'table'] as const) {
      if (store[name] !== undefined && !IDENTIFIER.test(store[name])) throw new TypeError(`\`store.${name}\` must be a lower-case SQL identifier`);
    }
  }
  const keyOf = keyFunction(options.key ?? 'tenant');
  const limiters = new Map<string, RateLimiterAbstract>();

  const limiterFor = (limit: RateLimit): RateLimiterAbstract => {
    const id = `${limit.points}_${limit.durationSeconds}`;
    let limiter = limiters.get(id);
    if (limiter) return limiter;
    // The prefix keeps each limit's buckets apart (in memory and in the shared table).
    const common = { points: limit.points, duration: limit.durationSeconds, keyPrefix: `lbmt_${id}` };
    if (store === 'memory') {
      limiter = new RateLimiterMemory(common);
    } else {
      limiter = new RateLimiterPostgres({
        ...common,
        // A plain { query } client (storeType 'client') instead of the pool itself: the library names
        // its prepared statements, which PgBouncer in transaction mode cannot route; unnamed
        // statements work everywhere.
        storeClient: { query: (q: { text: string; values?: unknown[] }) => store.pool.query({ text: q.text, values: q.values }) },
        storeType: 'client',
        schemaName: store.schema ?? 'linkbay',
        tableName: store.table ?? 'rate_limits',
        tableCreated: true,
      });
    }
    if (limiters.size >= MAX_LIMITERS) limiters.delete(limiters.keys().next().value!);
    limiters.set(id, limiter);
    return limiter;
  };

  return async function tenantRateLimit(ctx, next) {
    const tenant = ctx.state.tenant as Tenant | undefined;
    if (!tenant) return next();
    const custom = options.limitsFor?.(tenant);
    const limit = custom === undefined ? defaults : checkLimit(custom, 'limitsFor()');
    let result: RateLimiterRes;
    try {
      result = await limiterFor(limit).consume(keyOf(ctx, tenant));
    } catch (rejection) {
      // rate-limiter-flexible rejects with a RateLimiterRes when the limit is exceeded, with an
      // Error when the store failed.
      if (!(rejection instanceof RateLimiterRes)) throw rejection;
      setHeaders(ctx, limit, rejection);
      const error = new TenantRateLimitedError(`at most ${limit.points} requests per ${limit.durationSeconds} s`, secondsUntil(rejection));
      ctx.set('Retry-After', String(error.retryAfterSeconds));
      sendProblem(ctx, error.status, error.message, error.code);
      return;
    }
    setHeaders(ctx, limit, result);
    return next();
  };
}

/**
 * The table the PostgreSQL store uses (rate-limiter-flexible's layout), for a migration run by the
 * owner role: UNLOGGED (counters need no crash safety or replication, and skip the WAL) and usable
 * by `role` (the app role), which needs no CREATE privilege. The schema must exist (the default,
 * `linkbay`, is the tenants registry's); run it as the schema's owner.
 *
 * @example
 * await ownerPool.query(rateLimitTableSql({ role: 'app_user' }));
 */
export function rateLimitTableSql(options: { role: string; schema?: string; table?: string }): string {
  const schema = options.schema ?? 'linkbay';
  const table = options.table ?? 'rate_limits';
  for (const [name, value] of [['schema', schema], ['table', table], ['role', options.role]] as const) {
    if (typeof value !== 'string' || !IDENTIFIER.test(value)) throw new TypeError(`\`${name}\` must be a lower-case SQL identifier`);
  }
  const qualified = `"${schema}"."${table}"`;
  return `CREATE UNLOGGED TABLE IF NOT EXISTS ${qualified} (
  key varchar(255) PRIMARY KEY,
  points integer NOT NULL DEFAULT 0,
  expire bigint
);
GRANT USAGE ON SCHEMA "${schema}" TO "${options.role}";
GRANT SELECT, INSERT, UPDATE, DELETE ON ${qualified} TO "${options.role}";
`;
}

function checkLimit(limit: Partial<RateLimit>, where: string): RateLimit {
  const { points, durationSeconds } = limit ?? {};
  if (!Number.isInteger(points) || points! <= 0) throw new TypeError(`\`points\` (${where}) must be an integer greater than 0`);
  if (!Number.isInteger(durationSeconds) || durationSeconds! <= 0) {
    throw new TypeError(`\`durationSeconds\` (${where}) must be an integer greater than 0`);
  }
  return { points: points!, durationSeconds: durationSeconds! };
}

function keyFunction(key: NonNullable<TenantRateLimitOptions['key']>): (ctx: Context, tenant: Tenant) => string {
  if (key === 'tenant') return (_ctx, tenant) => tenant.id;
  if (key === 'tenant+ip') return (ctx, tenant) => `${tenant.id}|${ctx.ip}`;
  if (typeof key !== 'function') throw new TypeError("`key` must be 'tenant', 'tenant+ip' or a function");
  return (ctx, tenant) => {
    const own = String(key(ctx));
    // The store's key column is varchar(255): long keys are hashed to a fixed length.
    return `${tenant.id}|${own.length > 64 ? createHash('sha256').update(own).digest('hex') : own}`;
  };
}

function setHeaders(ctx: Context, limit: RateLimit, result: RateLimiterRes): void {
  ctx.set('RateLimit-Limit', String(limit.points));
  ctx.set('RateLimit-Remaining', String(result.remainingPoints));
  ctx.set('RateLimit-Reset', String(secondsUntil(result)));
}

function secondsUntil(result: RateLimiterRes): number {
  return Math.max(1, Math.ceil(result.msBeforeNext / 1000));
}
