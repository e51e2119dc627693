import type { QueryResult, QueryResultRow } from 'pg';
import { DEFAULT_TENANCY, type TenancyConfig } from './config.js';
import type { TenantPool } from './pool.js';
import { checkStatementTimeout, limitsOf, prepareMode } from './prelude.js';
import { checkLimits, checkPlanLimits, limitsFor, type PlanLimits, type TenantLimits } from './limits.js';
import { TenantContext } from './context.js';
import {
  resolveTenant,
  tenantQuery,
  withTenantTransaction,
  type QueryInput,
  type StatementGuard,
  type TenantQueryOptions,
  type TenantTransaction,
  type TenantTransactionOptions,
} from './transaction.js';
import type { PrepareMode } from './pipeline.js';
import { pipelinedTenantQuery, TenantPipeline, type PipelineOptions } from './tenant-pipeline.js';

/** What a handle is configured with once: every call through it uses these. */
export interface TenantDbOptions {
  /** Default `defineTenancy()`: `app.tenant_id`, uuid ids. */
  readonly tenancy?: TenancyConfig;
  /** Default `'tenant'` (see PrepareMode); `'none'` behind PgBouncer before 1.21. */
  readonly prepare?: PrepareMode | boolean;
  /** The SQL guard (`linkbay-multitenant/guard`), checking every statement. Default none. */
  readonly guard?: StatementGuard;
  /** `SET LOCAL statement_timeout` of every call, in milliseconds. Default: the server's. */
  readonly statementTimeoutMs?: number;
  /** Transaction-local limits of every call (src/limits.ts), on top of `planLimits`. */
  readonly limits?: TenantLimits;
  /**
   * Limits by the tenant's plan: the plan of TenantContext's tenant (the Koa middleware puts the
   * registry's `plan` there), or a call's `plan` option. Sent in the prelude: no extra round trip.
   */
  readonly planLimits?: PlanLimits;
  /**
   * Pipelined tenant statements (src/tenant-pipeline.ts): `tenantQuery` shares up to `connections`
   * of the pool's connections between all callers, `depth` batches in flight on each, each batch
   * its own implicit transaction. withTenantTransaction is not pipelined. Default: off.
   */
  readonly pipeline?: PipelineOptions;
}

/** Whether `value` is a handle made by createTenantDb (rather than a bare pool). */
export function isTenantDb(value: unknown): value is TenantDb {
  const db = value as TenantDb | undefined;
  return typeof db === 'object' && db !== null && typeof db.withTenantTransaction === 'function' && typeof db.pool?.connect === 'function' && !!db.tenancy;
}

/** Per-call options through a handle: what may differ from one call to the next. */
export type TenantCallOptions = Omit<TenantTransactionOptions, 'tenancy'> & {
  /** The tenant's plan for `planLimits`, when the tenant is not TenantContext's (whose plan is known). */
  readonly plan?: string;
};

/**
 * A pool bound to a tenancy and its options, configured (and validated) once: the way the library
 * is meant to be used. `tenantId` may be `undefined` to take TenantContext's tenant.
 */
export interface TenantDb {
  readonly pool: TenantPool;
  readonly tenancy: TenancyConfig;
  /** What the handle was configured with (frozen), tenancy included. */
  readonly options: TenantDbOptions & { readonly tenancy: TenancyConfig };
  withTenantTransaction<T>(tenantId: string | number | bigint | undefined, fn: (tx: TenantTransaction) => Promise<T> | T, options?: TenantCallOptions): Promise<T>;
  tenantQuery<R extends QueryResultRow = any>(
    tenantId: string | number | bigint | undefined,
    query: QueryInput,
    values?: readonly unknown[],
    options?: Omit<TenantQueryOptions, 'tenancy'> & { readonly plan?: string },
  ): Promise<QueryResult<R>>;
  /** With the `pipeline` option: its connections, batches in flight and calls waiting now. */
  readonly pipeline?: Pick<TenantPipeline, 'stats' | 'connections' | 'depth'>;
  /** The canonical id of `tenantId` (or of TenantContext's tenant) under this handle's tenancy. */
  tenantIdOf(tenantId?: string | number | bigint): string;
}

/**
 * Binds `pool` to a tenancy and options, once.
 *
 * @example
 * const db = createTenantDb(appPool, { tenancy, prepare: 'tenant' });
 * const { rows } = await db.tenantQuery(undefined, 'SELECT * FROM orders'); // the request's tenant
 * await db.withTenantTransaction(tenantId, async (tx) => { ... });
 */
export function createTenantDb(pool: TenantPool, options: TenantDbOptions = {}): TenantDb {
  if (!pool || typeof pool.connect !== 'function') throw new TypeError('`pool` must be a pg.Pool (anything with connect())');
  prepareMode(options.prepare); // throws naming the option
  checkStatementTimeout(options.statementTimeoutMs);
  checkLimits(options.limits);
  checkPlanLimits(options.planLimits);
  const tenancy = options.tenancy ?? DEFAULT_TENANCY;
  const { planLimits, ...rest } = options;
  const defaults = Object.freeze({ ...rest, tenancy });
  /** The plan whose limits apply: the call's, else TenantContext's when the call is for its tenant. */
  const planOf = (tenantId: string | number | bigint | undefined, call: { plan?: string } | undefined): string | undefined => {
    if (call?.plan !== undefined) return call.plan;
    const scope = TenantContext.getScope();
    if (!scope) return undefined;
    if (tenantId === undefined || tenantId === null) return scope.plan;
    try {
      return resolveTenant(tenantId, tenancy).id === scope.tenantId ? scope.plan : undefined;
    } catch {
      return undefined; // a bad id is refused by the call itself
    }
  };
  const merged = (tenantId: string | number | bigint | undefined, call: (object & { plan?: string }) | undefined): TenantTransactionOptions => {
    const options: TenantTransactionOptions = call ? { ...defaults, ...call, tenancy } : defaults;
    if (!planLimits) return options;
    return { ...options, statementTimeoutMs: undefined, limits: limitsFor(planLimits, planOf(tenantId, call), limitsOf(options)) };
  };
  const pipeline = options.pipeline ? new TenantPipeline(pool, options.pipeline) : undefined;
  return Object.freeze({
    pool,
    tenancy,
    options: defaults,
    ...(pipeline ? { pipeline } : {}),
    withTenantTransaction: (tenantId, fn, call) => withTenantTransaction(pool, tenantId, fn, merged(tenantId, call)),
    tenantQuery: pipeline
      ? (tenantId, query, values, call) => pipelinedTenantQuery(pipeline, tenantId, query, values, merged(tenantId, call))
      : (tenantId, query, values, call) => tenantQuery(pool, tenantId, query, values, merged(tenantId, call)),
    tenantIdOf: (tenantId) => resolveTenant(tenantId, tenancy).id,
  } satisfies TenantDb);
}
