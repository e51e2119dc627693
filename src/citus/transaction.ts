/**
 * The Citus tenant transaction functions (contract in ./batch.ts): tenantQuery and
 * withTenantTransaction that insist on a tenancy with `engine: 'citus'`, so that code written for a
 * cluster cannot silently run the vanilla path (which fails open there).
 */
import type { QueryResult, QueryResultRow } from 'pg';
import { tenantQuery, withTenantTransaction, type QueryInput, type TenantPool, type TenantQueryOptions, type TenantTransaction, type TenantTransactionOptions } from '../transaction.js';
import { requireCitus } from './batch.js';

/** tenantQuery on Citus: BEGIN, set_tenant, the statement and COMMIT in one round trip. */
export async function citusTenantQuery<R extends QueryResultRow = any>(
  pool: TenantPool,
  tenantId: string | number | bigint | undefined,
  query: QueryInput,
  values?: readonly unknown[],
  options: TenantQueryOptions = {},
): Promise<QueryResult<R>> {
  return tenantQuery<R>(pool, tenantId, query, values, { ...options, tenancy: requireCitus(options.tenancy) });
}

/** withTenantTransaction on Citus: BEGIN and set_tenant ride with the first statement. */
export async function withCitusTenantTransaction<T>(
  pool: TenantPool,
  tenantId: string | number | bigint | undefined,
  fn: (tx: TenantTransaction) => Promise<T> | T,
  options: TenantTransactionOptions = {},
): Promise<T> {
  return withTenantTransaction(pool, tenantId, fn, { ...options, tenancy: requireCitus(options.tenancy) });
}
