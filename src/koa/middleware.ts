import type { Context, Middleware } from 'koa';
import { TenantContext } from '../context.js';
import { TenantError } from '../errors.js';
import { createMultitenant, MultitenantCore, type MultitenantOptions } from '../core.js';
import type { TenantRequest } from '../resolution.js';
import { sendProblem } from './problem.js';

export interface MultitenantMiddlewareOptions {
  /** Let requests that name no tenant through (public routes); a bad tenant is still refused. */
  optional?: boolean;
  /**
   * Read the host from X-Forwarded-Host. Default: Koa's `app.proxy`. Only when a proxy you run
   * sets it: otherwise any client picks its tenant by sending the header.
   */
  trustProxy?: boolean;
}

/**
 * Koa middleware that resolves the tenant of each request, puts it in `ctx.state.tenant` and runs
 * the rest of the request inside TenantContext, so data code can call
 * `withTenantTransaction(pool, undefined, fn)`. Failures answer problem+json: 400 missing,
 * malformed or conflicting, 404 unknown, 403 suspended or deleted.
 *
 * @example
 * app.use(multitenant({ core }));
 * app.use(multitenant({ tenantService: new PgTenantService(appPool), strategies: ['header', 'subdomain'], baseDomain: 'example.com' }));
 */
export function multitenant(options: ({ core: MultitenantCore } | MultitenantOptions) & MultitenantMiddlewareOptions): Middleware {
  const core = 'core' in options ? options.core : createMultitenant(options);
  const optional = options.optional ?? false;
  return async function multitenant(ctx, next) {
    let resolution;
    try {
      resolution = await core.resolve(requestOf(ctx, options.trustProxy ?? ctx.app.proxy), { optional });
    } catch (error) {
      if (!(error instanceof TenantError)) throw error;
      sendProblem(ctx, error.status, error.expose ? error.message : undefined, error.code);
      return;
    }
    if (!resolution) return next();
    ctx.state.tenant = resolution.tenant;
    const stripped = core.stripPath(ctx.path);
    if (stripped !== ctx.path) ctx.path = stripped;
    return TenantContext.run(resolution.tenant.id, next);
  };
}

function requestOf(ctx: Context, trustProxy: boolean): TenantRequest {
  const headers = ctx.req.headers;
  const forwarded = trustProxy ? headers['x-forwarded-host'] : undefined;
  const host = (typeof forwarded === 'string' && forwarded.split(',')[0]?.trim()) || headers.host || '';
  return {
    header(name) {
      const value = headers[name.toLowerCase()];
      return Array.isArray(value) ? value.join(', ') : value;
    },
    host,
    path: ctx.path,
  };
}
