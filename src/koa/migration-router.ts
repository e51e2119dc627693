import type { Middleware } from 'koa';
import type { MoveOptions, TenantMigrationService } from '../tenant-migration.js';
import type { z } from 'zod';
import { parseTenantInput } from '../tenant-schema.js';
import { readJsonObject } from './body.js';
import { GuardedRouter } from './guarded-router.js';
import { problemDetails } from './problem.js';
import { moveBodySchema } from './schemas.js';
import { auditScope } from './audit.js';

export interface MigrationRouterOptions {
  /** Who may use it: throw or answer to refuse, `next()` to allow. Required. */
  authorize: Middleware;
  /**
   * The databases a tenant may be moved to, by name: a request names a target, never a URL (a URL
   * from a request would let a caller point the app at any server).
   */
  targets: Readonly<Record<string, MoveOptions>>;
  /** Default `/admin`. */
  prefix?: string;
}

/**
 * Tenant data routes over TenantMigrationService (the seed's create_migration_router):
 *
 *   GET  /tenants/:id/export  the tenant's rows as JSON, with counts: a dry run, for inspection
 *   POST /tenants/:id/move    { target, deleteSource? }: copy or move to a configured database
 *
 * Errors are problem+json (404 unknown tenant, 422 unknown target or a target already holding the
 * tenant's rows, 403 a row of another tenant).
 */
export function createMigrationRouter(service: TenantMigrationService, options: MigrationRouterOptions): GuardedRouter {
  if (typeof options?.authorize !== 'function') throw new TypeError('`authorize` is required: the migration API must not be open');
  // `authorize` in every route, however the path is spelled (GuardedRouter, PITFALLS 27).
  const router = new GuardedRouter({ prefix: options.prefix ?? '/admin', guards: [problemDetails(), options.authorize, auditScope()] });
  router.get('exportTenantData', '/tenants/:id/export', async (ctx) => {
    // Every row of the tenant is handed out: audited (the request's actor and X-Audit-Reason).
    const data = await service.exportTenantData(ctx.params.id!, { audit: {} });
    ctx.body = { ...data, counts: Object.fromEntries(data.tables.map((t) => [t.table, t.rows.length])) };
  });
  router.post('moveTenant', '/tenants/:id/move', async (ctx) => {
    const body = parseTenantInput<z.infer<typeof moveBodySchema>>(moveBodySchema, await readJsonObject(ctx));
    const named = Object.hasOwn(options.targets, body.target) ? options.targets[body.target] : undefined;
    const target: MoveOptions = named ?? ctx.throw(422, '`target` must name a configured target database');
    ctx.body = await service.moveTenant(ctx.params.id!, { ...target, deleteSource: body.deleteSource === true });
  });
  return router;
}
