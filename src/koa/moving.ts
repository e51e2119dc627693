import type { Middleware } from 'koa';
import type { Queryable } from '../pool.js';
import type { Tenant } from '../tenants.js';
import { writesFrozen } from '../portability/job-store.js';
import { TenantMovingError } from '../portability/errors.js';

export interface RefuseWritesWhileMovingOptions {
  /** The shared database (the app role may call `linkbay.tenant_writes_frozen(tenant)`). */
  readonly db: Queryable;
  /** Seconds the 503 tells clients to wait (Retry-After). Default 5. */
  readonly retryAfterSeconds?: number;
}

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * While the resolved tenant is being moved (TenantMoveJobs: from `frozen` until the switch has
 * settled) its writes are refused with TenantMovingError — 503 with `Retry-After` through
 * `problemDetails()` — and its reads go on. Mount it after `multitenant()`. Every non-safe request
 * of a tenant costs one indexed read of the shared database; the job's settle wait covers a request
 * that passed this check just before the freeze, and the job's verification catches one that was
 * slower still (it copies again).
 */
export function refuseWritesWhileMoving(options: RefuseWritesWhileMovingOptions): Middleware {
  const retryAfter = options.retryAfterSeconds ?? 5;
  return async function refuseWritesWhileMoving(ctx, next) {
    const tenant = ctx.state.tenant as Tenant | undefined;
    if (tenant && !SAFE.has(ctx.method) && (await writesFrozen(options.db, tenant.id))) throw new TenantMovingError(retryAfter);
    await next();
  };
}
