/**
 * linkbay-multitenant: PostgreSQL Row Level Security as the tenant isolation boundary.
 *
 * The documented API only, by name. The SQL guard is its own subpath (`linkbay-multitenant/guard`):
 * it loads the PostgreSQL parser (WebAssembly), which an app that only runs tenant transactions
 * should not pay for; its error class is here so that error handlers need not import it.
 */
export {
  TenantError,
  TenantRequiredError,
  InvalidTenantIdError,
  TenantNotFoundError,
  TenantSuspendedError,
  TenantInputError,
  TenantExistsError,
  TenantRateLimitedError,
  TenantConflictError,
  TenantMismatchError,
  TenantIsolationError,
  TransactionClosedError,
  TransactionAbortedError,
  TransactionEndedError,
  PipelineBrokenError,
  TenancyConfigError,
  PostureError,
  IsolationBreachError,
  CitusTenantNotSetError,
  TenantLimitError,
  OnboardingError,
  type OnboardingStep,
  type TenantErrorOptions,
  type FieldIssue,
} from './errors.js';
export { TenantGuardError, type GuardViolation } from './guard/errors.js';
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
export { TenantContext, runWithTenantContext, type TenantScope } from './context.js';
export { tenantLogMixin } from './log-mixin.js';
export { createTenantDb, type TenantDb, type TenantDbOptions, type TenantCallOptions } from './tenant-db.js';
export type { TenantLimits, PlanLimits } from './limits.js';
export type { PipelineOptions } from './tenant-pipeline.js';
export {
  withTenantTransaction,
  tenantQuery,
  type TenantTransaction,
  type StatementGuard,
  type TenantTransactionOptions,
  type TenantQueryOptions,
  type IsolationLevel,
  type QueryInput,
} from './transaction.js';
export type { TenantClient, TenantPool, Queryable, QueryOutput } from './pool.js';
export type { PrepareMode } from './pipeline.js';
export { CHANNELS, TENANT_OPERATIONS, type TransactionEvent, type ClientDestroyedEvent, type ResolutionEvent, type TenantOperation, type TenantOperationEvent } from './events.js';
export { generateRlsSql, currentTenantExpression, ISOLATION_POLICY, ACCESS_POLICY, type MigrationFile, type GenerateOptions } from './policies.js';
export { migrate, migrateFiles, MIGRATION_LOCK_KEY, type MigrateOptions, type MigrateResult } from './migrations.js';
export {
  migrateAllTenants,
  tenantMigrationUrl,
  type MigrateAllOptions,
  type MigrateAllResult,
  type FleetOutcome,
  type FleetProgress,
} from './fleet-migrations.js';
export { redactUrl } from './redact-url.js';
export { PgTenantService, TENANT_STATUSES, type Tenant, type TenantService, type TenantStatus } from './tenants.js';
export { TenantCache, TenantCacheService, type TenantCacheOptions, type TenantCacheStats, type TenantKey } from './cache.js';
export { TenantDBPool, type TenantDBPoolOptions, type TenantDBPoolStats } from './db-pool.js';
export { TenantAdminService, type NewTenant, type TenantPatch, type TenantAdminServiceOptions, type TenantList } from './admin.js';
export { MAX_METADATA_BYTES, MAX_METADATA_DEPTH } from './tenant-limits.js';
export type { OnboardingOptions, TenantDatabaseProvisioning, SeedContext } from './onboarding.js';
export { listAudit, tailAudit, writeAudit, AUDIT_ACTIONS, type AuditAction, type AuditContext, type AuditEntry, type AuditFilter, type AuditPage, type AuditRecord, type AuditTail } from './audit.js';
export { runWithAuditContext, currentAuditContext } from './audit-context.js';
export { TenantMigrationService, type TenantExport, type ImportResult, type MoveOptions, type TenantMigrationServiceOptions } from './tenant-migration.js';
export {
  TenantPortability,
  TenantMoveJobs,
  exportTenantStream,
  importTenantStream,
  writesFrozen,
  MOVE_STEPS,
  FORMAT_NAME,
  FORMAT_VERSION,
  EXPORT_MEDIA_TYPE,
  ExportFormatError,
  ImportTooLargeError,
  TenantMovingError,
  type TenantPortabilityOptions,
  type TenantMoveJobsOptions,
  type MoveTarget,
  type MoveJob,
  type MoveStep,
  type MoveState,
  type ExportStreamOptions,
  type ImportStreamOptions,
  type ImportStreamResult,
  type ExportHeader,
  type ExportTable,
  type ExportColumn,
  type ExportTrailer,
  type TableDigest,
} from './portability/index.js';
export { TenantChangeListener, TENANT_CHANGES_CHANNEL, type TenantChange, type TenantChangeListenerOptions, type Invalidatable } from './invalidation.js';
export { MultitenantCore, createMultitenant, type MaybePromise, type MultitenantOptions, type Resolution } from './core.js';
export type { TenantRequest, TenantCandidate, StrategySpec, StrategyDefaults, CustomStrategy, Strategy } from './resolution.js';
export { checkPosture, assertPosture, formatPostureReport, type Finding, type PostureReport, type PostureOptions, type Severity } from './posture/index.js';
export { purgeTenant, PurgeBlockedError, PurgeIncompleteError, type PurgeReport, type PurgedTable, type PurgeOptions } from './purge.js';
export { withSystemContext, SYSTEM_CHANNEL, type SystemContextOptions, type SystemTransaction, type SystemContextEvent } from './system-context.js';
