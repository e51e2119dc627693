import type { Middleware } from 'koa';
import type { TenantAdminService } from '../admin.js';
import { PurgeIncompleteError } from '../purge.js';
import { redactUrl } from '../database-url.js';
import type { Tenant, TenantStatus } from '../tenants.js';
import { readJsonObject } from './body.js';
import { GuardedRouter } from './guarded-router.js';
import { problemDetails } from './problem.js';

export interface AdminRouterOptions {
  /**
   * Decides who may use the admin API: throw (or answer) to refuse, call `next()` to allow.
   * Required: there is no default that would leave the registry open.
   */
  authorize: Middleware;
  /** Default `/admin`. */
  prefix?: string;
  /** Largest JSON body. Default 64 KB. */
  maxBodyBytes?: number;
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
  const router = new GuardedRouter({ prefix: options.prefix ?? '/admin', guards: [problemDetails(), options.authorize] });
  const body = (ctx: Parameters<Middleware>[0]) => readJsonObject(ctx, options.maxBodyBytes);
  router.post('/tenants', async (ctx) => {
    ctx.body = present(await service.createTenant((await body(ctx)) as never));
    ctx.status = 201;
  });
  router.get('/tenants', async (ctx) => {
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
  router.get('/tenants/:id', async (ctx) => {
    ctx.body = present(await service.getTenant(ctx.params.id!));
  });
  router.patch('/tenants/:id', async (ctx) => {
    ctx.body = present(await service.updateTenant(ctx.params.id!, (await body(ctx)) as never));
  });
  router.post('/tenants/:id/suspend', async (ctx) => {
    ctx.body = present(await service.suspendTenant(ctx.params.id!));
  });
  router.post('/tenants/:id/activate', async (ctx) => {
    ctx.body = present(await service.activateTenant(ctx.params.id!));
  });
  router.delete('/tenants/:id', async (ctx) => {
    await service.deleteTenant(ctx.params.id!);
    ctx.status = 204;
  });
  router.post('/tenants/:id/purge', async (ctx) => {
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
  return router;
}
