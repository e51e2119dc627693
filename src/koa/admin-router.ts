import type { Middleware } from 'koa';
import type { TenantAdminService } from '../admin.js';
import { PurgeIncompleteError } from '../purge.js';
import { redactUrl } from '../database-url.js';
import { MAX_METADATA_DEPTH } from '../tenant-limits.js';
import type { Tenant, TenantStatus } from '../tenants.js';
import { readJsonObject } from './body.js';
import { GuardedRouter } from './guarded-router.js';
import { openApiDocument, type OpenApiOptions } from './openapi.js';
import { problemDetails } from './problem.js';
import { addAuditRoute, auditScope, type AuditActor } from './audit.js';

export interface AdminRouterOptions {
  /**
   * Decides who may use the admin API: throw (or answer) to refuse, call `next()` to allow.
   * Required: there is no default that would leave the registry open.
   */
  authorize: Middleware;
  /** Default `/admin`. */
  prefix?: string;
  /** Largest JSON body (@koa/bodyparser's limit; 413 past it). Default 64 KB. */
  maxBodyBytes?: number;
  /**
   * `GET <prefix>/openapi.json`: the OpenAPI 3.1 document of these routes, generated from the
   * schemas they validate with, behind `authorize` like every route here. `routers`: other routers
   * under the same prefix to document too (createPortabilityRouter, createMigrationRouter).
   * `false`: not served. Default: served, documenting this router.
   */
  openapi?: false | (Partial<Pick<OpenApiOptions, 'routers' | 'info' | 'securitySchemes'>>);
  /**
   * Who the request is, for the audit log. Default: `ctx.state.actor` (set by `authorize`, e.g.
   * requireBearerToken's token `actor`), else `admin`. The reason comes from `X-Audit-Reason`.
   */
  actor?: AuditActor;
}

/**
 * The admin API over TenantAdminService (the seed's create_admin_router), on @koa/router. Errors
 * are problem+json: 401/403 from `authorize`, 404 unknown tenant, 409 taken slug or domain, 413, 415,
 * 422 invalid input (the message names the field). Database URLs are shown without their password.
 *
 *   POST   /tenants               create   { slug, name, domain?, plan?, metadata?, databaseUrl?, id? }
 *   GET    /tenants               list     ?status=&limit=&after=
 *   GET    /tenants/:id           read
 *   PATCH  /tenants/:id           change   { slug?, name?, domain?, plan?, metadata?, databaseUrl? }
 *   POST   /tenants/:id/suspend   suspend
 *   POST   /tenants/:id/activate  activate
 *   DELETE /tenants/:id           mark deleted (204)
 *   POST   /tenants/:id/purge     remove a deleted tenant's rows everywhere; the report (200), or 500 LBMT_PURGE_INCOMPLETE with it
 *   GET    /openapi.json          the OpenAPI 3.1 document of these routes (and of `openapi.routers`)
 *
 * Bodies are read by @koa/bodyparser (`maxBodyBytes`) and validated by the zod schemas of
 * src/tenant-schema.ts (in TenantAdminService), which the OpenAPI document is generated from.
 *   GET    /audit                 the audit log, newest first  ?tenant=&action=&actor=&since=&until=&limit=&after=
 *   GET    /audit/tail            the audit log in commit order, oldest first, for a consumer that follows it  ?after=&limit=
 *
 * Every change is audited (linkbay.audit_log) in its own transaction: the actor from `actor`, the
 * reason from the `X-Audit-Reason` header.
 *
 * @example
 * app.use(createAdminRouter(new TenantAdminService(adminPool), { authorize: requireAdminToken }).routes());
 */
/** A tenant as the API shows it: the password of its database URL is never sent. */
function present(tenant: Tenant): Tenant {
  return tenant.databaseUrl ? { ...tenant, databaseUrl: redactUrl(tenant.databaseUrl) } : tenant;
}

export function createAdminRouter(service: TenantAdminService, options: AdminRouterOptions): GuardedRouter {
  if (typeof options?.authorize !== 'function') throw new TypeError('`authorize` is required: the admin API must not be open');
  // `authorize` runs first in every route, however the path is spelled (GuardedRouter); problems
  // before it, so that its refusal is rendered too.
  const router = new GuardedRouter({ prefix: options.prefix ?? '/admin', guards: [problemDetails(), options.authorize, auditScope(options.actor)] });
  // Deep enough for a `metadata` one level over its limit (the body is one level more) to be
  // refused naming the field; a body nested 30,000 levels deep still never reaches JSON.stringify
  // or jsonb.
  const body = (ctx: Parameters<Middleware>[0]) => readJsonObject(ctx, options.maxBodyBytes, MAX_METADATA_DEPTH + 2);
  router.post('createTenant', '/tenants', async (ctx) => {
    ctx.body = present(await service.createTenant((await body(ctx)) as never));
    ctx.status = 201;
  });
  router.get('listTenants', '/tenants', async (ctx) => {
    const { status, limit, after } = ctx.query;
    const one = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);
    const limitText = one(limit);
    const page = await service.listTenants({
      status: one(status) as TenantStatus | undefined,
      limit: limitText === undefined ? undefined : /^\d{1,4}$/.test(limitText) ? Number(limitText) : Number.NaN,
      after: one(after),
    });
    ctx.body = { ...page, tenants: page.tenants.map(present) };
  });
  router.get('getTenant', '/tenants/:id', async (ctx) => {
    ctx.body = present(await service.getTenant(ctx.params.id!));
  });
  router.patch('updateTenant', '/tenants/:id', async (ctx) => {
    ctx.body = present(await service.updateTenant(ctx.params.id!, (await body(ctx)) as never));
  });
  router.post('suspendTenant', '/tenants/:id/suspend', async (ctx) => {
    ctx.body = present(await service.suspendTenant(ctx.params.id!));
  });
  router.post('activateTenant', '/tenants/:id/activate', async (ctx) => {
    ctx.body = present(await service.activateTenant(ctx.params.id!));
  });
  router.delete('deleteTenant', '/tenants/:id', async (ctx) => {
    await service.deleteTenant(ctx.params.id!);
    ctx.status = 204;
  });
  router.post('purgeTenant', '/tenants/:id/purge', async (ctx) => {
    try {
      ctx.body = await service.purgeTenant(ctx.params.id!);
    } catch (error) {
      if (!(error instanceof PurgeIncompleteError)) throw error;
      // The report is the point: which tables still hold rows, and why.
      ctx.status = error.status;
      ctx.type = 'application/problem+json';
      ctx.body = { type: 'about:blank', title: 'Purge incomplete', status: error.status, detail: error.message, code: error.code, report: error.report };
    }
  });
  addAuditRoute(router, service);
  const openapi = options.openapi;
  if (openapi !== false) {
    // Built on the first request, when every router has registered its routes; behind `authorize`
    // like every route here (the document lists what exists, which is nobody else's business).
    let document: Record<string, unknown> | undefined;
    router.get('getOpenApiDocument', '/openapi.json', (ctx) => {
      document ??= openApiDocument({ ...openapi, tenantIdType: service.tenancy.tenantIdType, routers: [router, ...(openapi?.routers ?? [])] });
      ctx.set('Cache-Control', 'no-store');
      ctx.body = document;
    });
  }
  return router;
}
