/**
 * linkbay-multitenant/drizzle: Drizzle (node-postgres) over the tenant handle. Every query runs as
 * a tenant (`db.tenantQuery`), every `transaction(fn)` is one `db.withTenantTransaction` (nested
 * ones are savepoints), so RLS applies to whatever Drizzle builds. drizzle-orm is an optional peer
 * dependency of this subpath.
 */
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import type { DrizzleConfig } from 'drizzle-orm';
import type { TenantDb } from '../tenant-db.js';
import { TenantDrizzlePool } from './pool.js';

export { TenantDrizzlePool, TenantDrizzleTransactionClient } from './pool.js';

export type TenantDrizzleOptions<TSchema extends Record<string, unknown>> = DrizzleConfig<TSchema> & {
  /** The tenant of every query. Default: TenantContext's, read at each query or transaction. */
  tenantId?: string | number | bigint;
};

/**
 * A Drizzle instance whose queries run as a tenant: `tenantId`'s, or (without it) TenantContext's
 * at each query or transaction, so one instance made at start-up serves every request.
 *
 * @example
 * const orm = tenantDrizzle(db, { schema });
 * const rows = await orm.select().from(orders);              // the request's tenant only, by RLS
 * await orm.transaction(async (tx) => { await tx.insert(orders).values({ ... }); }); // one tenant transaction
 */
export function tenantDrizzle<TSchema extends Record<string, unknown> = Record<string, never>>(
  db: TenantDb,
  options: TenantDrizzleOptions<TSchema> = {},
): NodePgDatabase<TSchema> & { $client: TenantDrizzlePool } {
  if (!db || typeof db.tenantQuery !== 'function') throw new TypeError('`db` must be a handle from createTenantDb()');
  const { tenantId, ...config } = options;
  if (tenantId !== undefined) db.tenantIdOf(tenantId); // a bad id is an error now, not at the first query
  return drizzle(new TenantDrizzlePool(db, tenantId) as never, config) as NodePgDatabase<TSchema> & { $client: TenantDrizzlePool };
}

/**
 * Runs `fn` with a Drizzle transaction that is one tenant transaction for `tenantId` (undefined:
 * TenantContext's): commits when fn resolves, rolls back when it throws.
 *
 * @example
 * const order = await withTenantDrizzle(db, tenantId, (tx) => tx.insert(orders).values({ tenantId, item: 'book' }).returning());
 */
export function withTenantDrizzle<T, TSchema extends Record<string, unknown> = Record<string, never>>(
  db: TenantDb,
  tenantId: string | number | bigint | undefined,
  fn: (tx: Parameters<Parameters<NodePgDatabase<TSchema>['transaction']>[0]>[0]) => Promise<T>,
  options: DrizzleConfig<TSchema> = {},
): Promise<T> {
  return tenantDrizzle<TSchema>(db, { ...options, ...(tenantId !== undefined ? { tenantId } : {}) }).transaction(fn);
}
