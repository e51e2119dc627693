import { TenantError, type TenantErrorOptions } from '../errors.js';

/**
 * A job reached a tenant worker without a tenant (sent with the queue's own `send`, or forged), or
 * with one that is not a valid id of the worker's tenancy. Its handler did not run; the job fails.
 * The raw value is not in the message.
 */
export class JobTenantMissingError extends TenantError {
  constructor(message = 'the job names no tenant: send it with sendTenantJob (or sendSystemJob with a reason)', options?: TenantErrorOptions) {
    super('LBMT_JOB_TENANT_MISSING', message, 500, false, options);
  }
}

/** A system job reached a tenant worker, or a tenant job a system worker. Its handler did not run. */
export class JobScopeError extends TenantError {
  constructor(message: string) {
    super('LBMT_JOB_SCOPE_MISMATCH', message, 500, false);
  }
}
