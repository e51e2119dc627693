/** linkbay-multitenant/koa: tenant resolution middleware, routers and problem+json for Koa. */
export { multitenant, type MultitenantMiddlewareOptions } from './middleware.js';
export { requireTenant, createTenantRouter } from './router.js';
export { GuardedRouter, type GuardedRouterOptions } from './guarded-router.js';
export { requireBearerToken, type BearerTokenOptions, type NamedToken } from './bearer.js';
export { problemDetails, problemFor, sendProblem, setRetryAfter, type Problem } from './problem.js';
export { metricsMiddleware, createMetricsRouter, type MetricsMiddlewareOptions, type MetricsRouterOptions } from './metrics.js';
export { tenantRateLimit, rateLimitTableSql, type TenantRateLimitOptions, type RateLimit, type PostgresRateLimitStore } from './rate-limit.js';
export { createAdminRouter, type AdminRouterOptions } from './admin-router.js';
export { openApiDocument, type OpenApiOptions } from './openapi.js';
export { newTenantSchema, tenantPatchSchema, type TenantSchemaOptions } from '../tenant-schema.js';
export { readJsonObject, jsonBody, MAX_JSON_BYTES, MAX_JSON_DEPTH, type JsonBodyOptions } from './body.js';
export { createMigrationRouter, type MigrationRouterOptions } from './migration-router.js';
export { refuseWritesWhileMoving, type RefuseWritesWhileMovingOptions } from './moving.js';
export { createPortabilityRouter, MAX_IMPORT_BYTES, type PortabilityRouterOptions } from './portability-router.js';
export { auditScope, addAuditRoute, AUDIT_REASON_HEADER, type AuditActor } from './audit.js';
