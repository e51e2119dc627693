import type { RouterOptions } from '@koa/router';
import type { Middleware } from 'koa';
import { TenantRequiredError } from '../errors.js';
import { GuardedRouter } from './guarded-router.js';
import { sendProblem } from './problem.js';

/**
 * Refuses requests without a resolved tenant (400 problem+json): the seed's `require_tenant`.
 * Use it on tenant routes when `multitenant({ optional: true })` lets public requests through.
 */
export function requireTenant(): Middleware {
  return async function requireTenant(ctx, next) {
    if (!ctx.state.tenant) {
      const error = new TenantRequiredError();
      sendProblem(ctx, error.status, error.message, error.code);
      return;
    }
    await next();
  };
}

/**
 * A @koa/router Router whose every route requires a tenant (the seed's MultitenantRouter):
 * `requireTenant()` runs first in each route, however the request spells the path (GuardedRouter).
 *
 * @example
 * const api = createTenantRouter({ prefix: '/api' });
 * api.get('/dashboard', (ctx) => { ctx.body = { tenant: ctx.state.tenant.id }; });
 * app.use(multitenant({ core, optional: true })).use(api.routes());
 */
export function createTenantRouter(options: RouterOptions = {}): GuardedRouter {
  return new GuardedRouter({ ...options, guards: [requireTenant()] });
}
