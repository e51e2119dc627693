/** linkbay-multitenant/citus: the library on a Citus cluster (docs/citus.md). */
export { citusTenantQuery, withCitusTenantTransaction } from './transaction.js';
export { citusTenantStatement, requireCitus } from './batch.js';
export { citusSetupSql, citusTableSql, citusReferenceTablesSql, SET_TENANT_FUNCTION } from './schema.js';
