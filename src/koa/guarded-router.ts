import Router, { type RouterOptions } from '@koa/router';
import type { Middleware } from 'koa';

export interface GuardedRouterOptions extends RouterOptions {
  /** Run, in order, before the rest of every route of this router. At least one. */
  guards: readonly Middleware[];
}

/**
 * A @koa/router Router whose guards run first in every route, whatever spelling of the path
 * matched it: the way to put authorization (or `requireTenant`) on a prefixed router.
 *
 * Why not `router.use(guard)`: @koa/router 15 matches `use` middleware of a prefixed router with a
 * case-sensitive regexp of the prefix, while routes go through path-to-regexp, case-insensitive by
 * default. `/ADMIN/tenants` then skipped the guard and still reached `/admin/tenants` (PITFALLS 27).
 * Here the guards are part of each route's own middleware: a request reaches a handler only through
 * the route that matched it, so only past the guards. Routes added later, nested routers mounted
 * with `use(other.routes())` and `param()` middleware are covered too: before every dispatch the
 * guards are put (back) at the head of any route that lacks them.
 *
 * @example
 * const router = new GuardedRouter({ prefix: '/admin', guards: [problemDetails(), requireAdminToken] });
 * router.get('/tenants', listTenants);
 * app.use(router.routes());
 */
export class GuardedRouter extends Router {
  readonly #guards: readonly Middleware[];

  constructor(options: GuardedRouterOptions) {
    const { guards, ...routerOptions } = options ?? ({} as GuardedRouterOptions);
    if (!Array.isArray(guards) || guards.length === 0 || guards.some((g) => typeof g !== 'function')) {
      throw new TypeError('`guards` must be a non-empty array of middleware');
    }
    super(routerOptions);
    this.#guards = [...guards];
  }

  override middleware(): ReturnType<Router['middleware']> {
    this.#guardRoutes(); // now, so that a parent router mounting this one copies guarded routes
    const dispatch = super.middleware();
    const guardedDispatch = ((ctx, next) => {
      this.#guardRoutes();
      return dispatch(ctx, next);
    }) as typeof dispatch;
    return Object.assign(guardedDispatch, { router: dispatch.router });
  }

  override routes(): ReturnType<Router['middleware']> {
    return this.middleware();
  }

  /**
   * `allowedMethods()` answers a path a route matched with another method (405, 501) or OPTIONS
   * (200), listing the matched routes' methods in `Allow`: without the guards, the map of a guarded
   * API told to anyone. Here it answers for this router's own routes only (another router's
   * `allowedMethods` answers for its routes, behind its guards), and only past the guards, which run
   * inside its `next`, after the rest of the chain, so that a refusal is the answer. A request whose
   * method one of these routes took has been through them already.
   */
  override allowedMethods(...args: Parameters<Router['allowedMethods']>): ReturnType<Router['allowedMethods']> {
    const allowed = super.allowedMethods(...args);
    const guards = this.#guards;
    return (async (ctx, next) => {
      const matched = { set: false, value: undefined as unknown };
      await allowed(ctx, async () => {
        await next();
        if (ctx.status !== 404 || !Array.isArray(ctx.matched)) return;
        const own = new Set<unknown>(this.stack);
        const ours = ctx.matched.filter((layer) => own.has(layer) && layer.methods.length > 0);
        const method = ctx.method.toUpperCase();
        if (ours.some((layer) => layer.methods.includes(method))) return;
        Object.assign(matched, { set: true, value: ctx.matched });
        // What it reads once this returns: nothing of other routers' routes.
        ctx.matched = ours.length > 0 ? ours : undefined;
        if (ours.length === 0) return;
        const run = (i: number): Promise<void> => (i < guards.length ? Promise.resolve(guards[i]!(ctx as never, () => run(i + 1))) : Promise.resolve());
        await run(0);
      });
      // For the routers before this one (their own allowedMethods).
      if (matched.set) ctx.matched = matched.value as typeof ctx.matched;
    }) as ReturnType<Router['allowedMethods']>;
  }

  /** Every route (a layer with methods; `use` layers have none) starts with the guards. */
  #guardRoutes(): void {
    const guards = this.#guards;
    for (const layer of this.stack) {
      if (layer.methods.length === 0 || startsWith(layer.stack, guards)) continue;
      const rest = layer.stack.filter((middleware) => !guards.includes(middleware as Middleware));
      layer.stack.splice(0, layer.stack.length, ...(guards as unknown as typeof rest), ...rest);
    }
  }
}

function startsWith(stack: readonly unknown[], guards: readonly Middleware[]): boolean {
  for (let i = 0; i < guards.length; i += 1) if (stack[i] !== guards[i]) return false;
  return true;
}
