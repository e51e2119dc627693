/** linkbay-multitenant/citus: the library on a Citus cluster (docs/citus.md). */
export { citusTenantQuery, withCitusTenantTransaction } from './transaction.js';
export { citusTenantStatement, requireCitus } from './batch.js';
export { citusSetupSql, citusTableSql, citusReferenceTablesSql, SET_TENANT_FUNCTION } from './schema.js';
export { isolateTenant, moveTenant, tenantPlacement, tenantStatistics, type PlacementOptions, type ShardTransferMode, type TenantPlacement, type TenantStatistic } from './placement.js';
export { citusPosture, type CitusPosture } from './posture.js';
export { citusRefused, tenantSettingStatement } from './testing.js';
