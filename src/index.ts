/** linkbay-multitenant: PostgreSQL Row Level Security as the tenant isolation boundary. */
export * from './errors.js';
export { canonicalTenantId, tryCanonicalTenantId, TENANT_ID_TYPES, type TenantIdType } from './tenant-id.js';
export {
  defineTenancy,
  DEFAULT_TENANCY,
  type TenancyConfig,
  type TenancyInput,
  type TenancyRoles,
  type TenantTable,
  type TenantTableInput,
  type PolicyForm,
} from './config.js';
export { TenantContext, runWithTenantContext } from './context.js';
export {
  withTenantTransaction,
  tenantQuery,
  resolveTenantId,
  TransactionAbortedError,
  TransactionEndedError,
  type TenantTransaction,
  type StatementGuard,
  type TenantTransactionOptions,
  type TenantQueryOptions,
  type IsolationLevel,
  type QueryInput,
  type TenantClient,
  type TenantPool,
} from './transaction.js';
export { type PrepareMode } from './pipeline.js';
export { CHANNELS, type TransactionEvent, type ClientDestroyedEvent, type ResolutionEvent } from './events.js';
export { generateRlsSql, currentTenantExpression, ISOLATION_POLICY, ACCESS_POLICY, type MigrationFile, type GenerateOptions } from './policies.js';
export {
  migrate,
  migrateFiles,
  migrateAllTenants,
  tenantMigrationUrl,
  MIGRATION_LOCK_KEY,
  type MigrateOptions,
  type MigrateResult,
  type MigrateAllOptions,
  type MigrateAllResult,
} from './migrations.js';
export { PgTenantService, toTenant, type Tenant, type TenantService, type TenantStatus, type Queryable } from './tenants.js';
export { TenantCache, TenantCacheService, type TenantCacheOptions, type TenantCacheStats, type TenantKey } from './cache.js';
export { TenantDBPool, type TenantDBPoolOptions, type TenantDBPoolStats } from './db-pool.js';
export { TenantAdminService, type NewTenant, type TenantPatch, type TenantAdminServiceOptions, type TenantList } from './admin.js';
export { TenantMigrationService, type TenantExport, type ImportResult, type MoveOptions, type TenantMigrationServiceOptions } from './tenant-migration.js';
export { TenantChangeListener, TENANT_CHANGES_CHANNEL, type TenantChange, type TenantChangeListenerOptions, type Invalidatable } from './invalidation.js';
export { MultitenantCore, createMultitenant, type MaybePromise, type MultitenantOptions, type Resolution } from './core.js';
export {
  buildStrategies,
  normaliseHost,
  type TenantRequest,
  type TenantCandidate,
  type StrategySpec,
  type StrategyDefaults,
  type CustomStrategy,
  type Strategy,
} from './resolution.js';
export { checkPosture, assertPosture, formatPostureReport, type Finding, type PostureReport, type PostureOptions, type Severity } from './posture.js';
export {
  createQueryGuard,
  TenantQueryGuard,
  withAdminBypass,
  TenantGuardError,
  GUARD_CHANNELS,
  readGuardCatalog,
  staticGuardCatalog,
  type QueryGuardOptions,
  type AdminBypassOptions,
  type GuardViolation,
  type GuardViolationEvent,
  type GuardBypassEvent,
  type GuardCatalog,
  type GuardedTable,
  type StaticTableInput,
  type GuardablePool,
  type GuardableClient,
  type GuardedPool,
  type GuardedClient,
  type Verdict,
} from './guard/index.js';
