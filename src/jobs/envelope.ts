import type { TenancyConfig } from '../config.js';
import { InvalidTenantIdError } from '../errors.js';
import { canonicalTenantId } from '../tenant-id.js';
import { resolveTenant } from '../transaction.js';
import { JobScopeError, JobTenantMissingError } from './errors.js';

/**
 * What a job carries: its payload under `data`, and either the tenant it was sent for (canonical,
 * stamped at send time from TenantContext or given) or, for a system job, the reason it has none.
 * Queue-neutral: pg-boss stores it as the job's data, BullMQ would too.
 */
export type JobEnvelope<T> =
  | { readonly lbmt: { readonly tenantId: string }; readonly data: T }
  | { readonly lbmt: { readonly system: string }; readonly data: T };

/** The envelope of a tenant job: `tenantId`, or TenantContext's tenant (TenantRequiredError without one). */
export function tenantEnvelope<T>(data: T, tenantId: string | number | bigint | undefined, tenancy: TenancyConfig | undefined): JobEnvelope<T> {
  return { lbmt: { tenantId: resolveTenant(tenantId, tenancy).id }, data };
}

/** The envelope of a system job, which must say why it runs without a tenant. */
export function systemEnvelope<T>(data: T, reason: string): JobEnvelope<T> {
  checkReason(reason);
  return { lbmt: { system: reason }, data };
}

export function checkReason(reason: unknown): asserts reason is string {
  if (typeof reason !== 'string' || reason.trim().length === 0 || reason.length > 200) {
    throw new TypeError('a system job must name its `reason` (a non-empty string of at most 200 characters): work without a tenant is never implicit');
  }
}

/** What a received job is: a tenant job (id canonical for `tenancy`) or a system job. Throws for anything else. */
export function readEnvelope(raw: unknown, tenancy: TenancyConfig): { tenantId: string; data: unknown } | { system: string; data: unknown } {
  const lbmt = (raw as { lbmt?: { tenantId?: unknown; system?: unknown } } | null)?.lbmt;
  const data = (raw as { data?: unknown } | null)?.data;
  if (lbmt && typeof lbmt.tenantId === 'string' && lbmt.system === undefined) {
    try {
      return { tenantId: canonicalTenantId(lbmt.tenantId, tenancy.tenantIdType), data };
    } catch (error) {
      throw new InvalidTenantIdError(`the job's tenant is not a valid ${tenancy.tenantIdType} tenant id`, { cause: error });
    }
  }
  if (lbmt && typeof lbmt.system === 'string' && lbmt.tenantId === undefined) {
    try {
      checkReason(lbmt.system);
    } catch {
      throw new JobScopeError('the system job names no valid reason');
    }
    return { system: lbmt.system, data };
  }
  throw new JobTenantMissingError();
}
