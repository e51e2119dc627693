import type { Context, Middleware, Next } from 'koa';
import { TenantContext } from '../context.js';
import { TenantError } from '../errors.js';
import { createMultitenant, MultitenantCore, type MaybePromise, type MultitenantOptions, type Resolution } from '../core.js';
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
 * malformed or conflicting, 404 unknown, 403 suspended, deleted or provisioning.
 *
 * @example
 * app.use(multitenant({ core }));
 * app.use(multitenant({ tenantService: new PgTenantService(appPool), strategies: ['header', 'subdomain'], baseDomain: 'example.com' }));
 */
export function multitenant(options: ({ core: MultitenantCore } | MultitenantOptions) & MultitenantMiddlewareOptions): Middleware {
  const core = 'core' in options ? options.core : createMultitenant(options);
  const optional = options.optional ?? false;
  // Not an async function, and no closure per request: with a warm cache the tenant is resolved
  // synchronously and the request goes on without an extra promise (this is on every request's path).
  return function multitenant(ctx, next) {
    let resolution: MaybePromise<Resolution | undefined>;
    try {
      resolution = core.resolveNow(new KoaTenantRequest(ctx, options.trustProxy ?? ctx.app.proxy), { optional });
    } catch (error) {
      refuse(ctx, error);
      return Promise.resolve();
    }
    if (resolution instanceof Promise) {
      return resolution.then(
        (r) => proceed(core, ctx, next, r),
        (error: unknown) => refuse(ctx, error),
      );
    }
    return proceed(core, ctx, next, resolution);
  };
}

function proceed(core: MultitenantCore, ctx: Context, next: Next, resolution: Resolution | undefined): Promise<unknown> {
  if (!resolution) return next();
  ctx.state.tenant = resolution.tenant;
  const stripped = core.stripPath(ctx.path);
  if (stripped !== ctx.path) ctx.path = stripped;
  return TenantContext.run(resolution.tenant.id, next, core.tenancy, resolution.tenant.plan);
}

function refuse(ctx: Context, error: unknown): void {
  if (!(error instanceof TenantError)) throw error;
  const challenge = (error as { challenge?: unknown }).challenge;
  if (error.status === 401 && typeof challenge === 'string') ctx.set('WWW-Authenticate', challenge);
  sendProblem(ctx, error.status, error.expose ? error.message : undefined, error.code);
}

/** The request as the strategies see it. */
class KoaTenantRequest implements TenantRequest {
  readonly host: string;
  readonly path: string;
  private readonly headers: Context['req']['headers'];

  constructor(ctx: Context, trustProxy: boolean) {
    this.headers = ctx.req.headers;
    const forwarded = trustProxy ? this.headers['x-forwarded-host'] : undefined;
    this.host = (typeof forwarded === 'string' && forwarded.split(',')[0]?.trim()) || this.headers.host || '';
    this.path = ctx.path;
  }

  header(name: string): string | undefined {
    const value = this.headers[name.toLowerCase()];
    return Array.isArray(value) ? value.join(', ') : value;
  }
}
