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
 * of a tenant costs one indexed read of the shared database. It refuses early (before the handler
 * runs) and covers the moments no runner holds the tenant's write key (a crashed move, until another
 * instance resumes it); the key itself (src/write-gate.ts) refuses writes inside the transaction,
 * including those of a request that passed this check just before the freeze.
 */
export function refuseWritesWhileMoving(options: RefuseWritesWhileMovingOptions): Middleware {
  const retryAfter = options.retryAfterSeconds ?? 5;
  return async function refuseWritesWhileMoving(ctx, next) {
    const tenant = ctx.state.tenant as Tenant | undefined;
    if (tenant && !SAFE.has(ctx.method) && (await writesFrozen(options.db, tenant.id))) throw new TenantMovingError(retryAfter);
    await next();
  };
}
