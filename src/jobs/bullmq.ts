import { DEFAULT_TENANCY, type TenancyConfig } from '../config.js';
import { TenantContext } from '../context.js';
import { TenantError } from '../errors.js';
import { systemEnvelope, tenantEnvelope } from './envelope.js';
import type { SystemJob, TenantJob, TenantJobSendOptions } from './pg-boss.js';
import { publishSystem, systemScopeOf, tenantScopeOf } from './scope.js';

/** The subset of a BullMQ Queue these helpers use (bullmq 5 fits). */
export interface BullQueue {
  readonly name: string;
  add(name: string, data: unknown, options?: object): Promise<{ readonly id?: string | undefined }>;
}

/** A job as a BullMQ Worker hands it to its processor. */
export interface BullJob {
  readonly id?: string | undefined;
  readonly name: string;
  readonly queueName: string;
  readonly data: unknown;
}

/**
 * Adds a job for the current tenant (or `options.tenantId`) to a BullMQ queue: the canonical id is
 * stamped in the job's data. Outside a tenant context with no `tenantId`, TenantRequiredError and
 * nothing is added. BullMQ's job options go in `options.send`.
 *
 * @example
 * await addTenantJob(invoices, 'send-invoice', { invoiceId }); // the request's tenant
 */
export async function addTenantJob<T extends object>(queue: BullQueue, name: string, data: T, options: TenantJobSendOptions = {}): Promise<string | undefined> {
  const job = await queue.add(name, tenantEnvelope(data, options.tenantId, options.tenancy), options.send ?? {});
  return job.id;
}

/** Adds a system job (no tenant), which must name its reason; published on JOB_CHANNELS.system. */
export async function addSystemJob<T extends object>(queue: BullQueue, name: string, data: T, options: { reason: string; send?: object }): Promise<string | undefined> {
  const envelope = systemEnvelope(data, options?.reason);
  const job = await queue.add(name, envelope, options.send ?? {});
  publishSystem({ phase: 'sent', queue: queue.name, jobId: job.id ?? null, reason: options.reason });
  return job.id;
}

/**
 * A BullMQ processor that runs `handler` inside `TenantContext.run(tenant, ..., tenancy)`. A job
 * with no tenant, an invalid one, or a system job fails without running the handler, and is not
 * retried (the error is named `UnrecoverableError`, which BullMQ does not retry; its message starts
 * with the library's code).
 *
 * @example
 * new Worker('invoices', tenantJobProcessor({ tenancy }, async (job) => { ... }), { connection });
 */
export function tenantJobProcessor<T, R = unknown>(options: { tenancy?: TenancyConfig }, handler: (job: TenantJob<T>) => Promise<R> | R): (job: BullJob) => Promise<R> {
  const tenancy = options?.tenancy ?? DEFAULT_TENANCY;
  return async function tenantJobProcessor(job) {
    const id = job.id ?? '';
    const scope = unrecoverable(() => tenantScopeOf({ id, queue: job.queueName, data: job.data }, tenancy));
    return TenantContext.run(scope.tenantId, () => handler({ id, name: job.name, tenantId: scope.tenantId, data: scope.data as T }), tenancy);
  };
}

/** A BullMQ processor for system jobs: runs outside any tenant context; a tenant job fails unrun. */
export function systemJobProcessor<T, R = unknown>(handler: (job: SystemJob<T>) => Promise<R> | R): (job: BullJob) => Promise<R> {
  return async function systemJobProcessor(job) {
    const id = job.id ?? '';
    const scope = unrecoverable(() => systemScopeOf({ id, queue: job.queueName, data: job.data }));
    return TenantContext.exit(() => handler({ id, name: job.name, reason: scope.system, data: scope.data as T }));
  };
}

/** A refusal BullMQ will not retry: no attempt can give the job a tenant. The library's error is `cause`. */
export class RefusedJobError extends Error {
  override readonly name = 'UnrecoverableError';
  readonly code: string;
  constructor(error: TenantError) {
    super(`${error.code}: ${error.message}`, { cause: error });
    this.code = error.code;
  }
}

function unrecoverable<S>(read: () => S): S {
  try {
    return read();
  } catch (error) {
    throw error instanceof TenantError ? new RefusedJobError(error) : error;
  }
}
