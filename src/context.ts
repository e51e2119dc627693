import { AsyncLocalStorage } from 'node:async_hooks';
import type { TenancyConfig } from './config.js';
import { TenantRequiredError } from './errors.js';

/** The tenant of an async scope: its canonical id and, when known, the tenancy it was resolved under. */
export interface TenantScope {
  readonly tenantId: string;
  readonly tenancy?: TenancyConfig | undefined;
  /** The tenant's plan (the registry's `plan`), for per-plan limits (src/limits.ts). */
  readonly plan?: string | undefined;
}

const storage = new AsyncLocalStorage<TenantScope>();

/**
 * The tenant of the current async call chain (a request, a background job), on AsyncLocalStorage.
 * The library reads it only when a tenant id is not passed explicitly; inside the library the id is
 * always passed along explicitly, so pool callbacks and event emitters cannot lose or cross it.
 */
export const TenantContext = {
  /**
   * Runs `fn` with `tenantId` as the current tenant. The id is stored as given: canonicalise it
   * first. With `tenancy` (the config it was canonicalised under), tenant calls that pass
   * `undefined` and no tenancy of their own use it: set it whenever the tenancy is not the default.
   */
  run<T>(tenantId: string, fn: () => T, tenancy?: TenancyConfig, plan?: string): T {
    if (typeof tenantId !== 'string' || tenantId.length === 0) {
      throw new TenantRequiredError('TenantContext.run needs a non-empty tenant id');
    }
    return storage.run({ tenantId, tenancy, plan }, fn);
  },
  /** The current tenant and its tenancy, or undefined outside any tenant scope. */
  getScope(): TenantScope | undefined {
    return storage.getStore();
  },
  /** The current tenant id, or undefined outside any tenant scope. */
  getTenantId(): string | undefined {
    return storage.getStore()?.tenantId;
  },
  /** The current tenant id; throws TenantRequiredError outside any tenant scope. */
  requireTenantId(): string {
    const tenantId = storage.getStore()?.tenantId;
    if (tenantId === undefined) throw new TenantRequiredError();
    return tenantId;
  },
  /** Runs `fn` with no current tenant (for work that must not inherit the caller's tenant). */
  exit<T>(fn: () => T): T {
    return storage.exit(fn);
  },
};

/**
 * Runs `fn` (sync or async) in the tenant context of `tenantId`, e.g. for a background job started
 * from a request. The seed library's `run_with_tenant_context`.
 *
 * @example
 * setImmediate(() => runWithTenantContext(tenant.id, sendInvoiceEmails));
 */
export function runWithTenantContext<T>(tenantId: string, fn: () => T, tenancy?: TenancyConfig): T {
  return TenantContext.run(tenantId, fn, tenancy);
}
