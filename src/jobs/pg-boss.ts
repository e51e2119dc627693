import { DEFAULT_TENANCY, type TenancyConfig } from '../config.js';
import { TenantContext } from '../context.js';
import { systemEnvelope, tenantEnvelope } from './envelope.js';
import { publishSystem, systemScopeOf, tenantScopeOf } from './scope.js';

/** A job as pg-boss hands it to a worker. */
export interface BossJob {
  readonly id: string;
  readonly name: string;
  readonly data: unknown;
}

/** The subset of a PgBoss instance these helpers use (pg-boss 10 fits). */
export interface JobBoss {
  send(name: string, data: object, options: object): Promise<string | null>;
  work(name: string, options: object, handler: (jobs: any[]) => Promise<unknown>): Promise<string>;
}

/** What a handler receives: the payload it was sent, and the job's tenant (also in TenantContext). */
export interface TenantJob<T> {
  readonly id: string;
  readonly name: string;
  readonly tenantId: string;
  readonly data: T;
}

export interface SystemJob<T> {
  readonly id: string;
  readonly name: string;
  readonly reason: string;
  readonly data: T;
}

export interface TenantJobSendOptions {
  /** Default: TenantContext's tenant; with neither, TenantRequiredError and nothing is sent. */
  readonly tenantId?: string | number | bigint;
  /** The tenancy `tenantId` is read with. Default: the context's, else `defineTenancy()`'s. */
  readonly tenancy?: TenancyConfig;
  /** pg-boss's own send options (retryLimit, startAfter, singletonKey, ...). */
  readonly send?: object;
}

/**
 * Sends a job for the current tenant (or `options.tenantId`): the canonical id is stamped in the
 * job's data, so the worker runs it as that tenant. Outside a tenant context with no `tenantId`,
 * TenantRequiredError: a job never silently loses its tenant.
 *
 * @example
 * router.post('/api/invoices/:id/send', async (ctx) => {
 *   await sendTenantJob(boss, 'send-invoice', { invoiceId: ctx.params.id }); // the request's tenant
 * });
 */
export async function sendTenantJob<T extends object>(boss: JobBoss, name: string, data: T, options: TenantJobSendOptions = {}): Promise<string | null> {
  const envelope = tenantEnvelope(data, options.tenantId, options.tenancy);
  return boss.send(name, envelope, options.send ?? {});
}

/**
 * Sends a job that runs without a tenant (a cross-tenant report, a cleanup): it must name why,
 * and is published on JOB_CHANNELS.system when sent and when started.
 *
 * @example
 * await sendSystemJob(boss, 'purge-deleted-tenants', {}, { reason: 'nightly purge of deleted tenants' });
 */
export async function sendSystemJob<T extends object>(boss: JobBoss, name: string, data: T, options: { reason: string; send?: object }): Promise<string | null> {
  const envelope = systemEnvelope(data, options?.reason);
  const jobId = await boss.send(name, envelope, options.send ?? {});
  publishSystem({ phase: 'sent', queue: name, jobId, reason: options.reason });
  return jobId;
}

export interface TenantWorkOptions {
  /** The tenancy job tenants are read with (their id type is checked on receipt). Default `defineTenancy()`. */
  readonly tenancy?: TenancyConfig;
  /** pg-boss's work options, except batchSize: each job runs in its own tenant context. */
  readonly work?: { readonly pollingIntervalSeconds?: number; readonly includeMetadata?: boolean; readonly priority?: boolean };
}

/**
 * Runs `handler` for each job of queue `name` inside `TenantContext.run(tenant, ..., tenancy)`, so
 * `db.tenantQuery(undefined, ...)` and friends use the job's tenant. A job without a tenant, with an
 * invalid one, or a system job fails WITHOUT running the handler (published on JOB_CHANNELS.refused);
 * it never runs unscoped. Resolves with the worker id (pg-boss's `offWork` takes it).
 *
 * @example
 * await workTenantJobs(boss, 'send-invoice', { tenancy }, async (job) => {
 *   const { rows } = await db.tenantQuery(undefined, 'SELECT * FROM invoices WHERE id = $1', [job.data.invoiceId]);
 * });
 */
export function workTenantJobs<T, R = unknown>(boss: JobBoss, name: string, options: TenantWorkOptions, handler: (job: TenantJob<T>) => Promise<R> | R): Promise<string> {
  const tenancy = options.tenancy ?? DEFAULT_TENANCY;
  return boss.work(name, workOptions(options), async (jobs: BossJob[]) => {
    const job = single(jobs);
    const scope = tenantScopeOf({ id: job.id, queue: job.name, data: job.data }, tenancy);
    return TenantContext.run(scope.tenantId, () => handler({ id: job.id, name: job.name, tenantId: scope.tenantId, data: scope.data as T }), tenancy);
  });
}

/**
 * Runs `handler` for each system job of queue `name`, outside any tenant context (tenant calls in it
 * need an explicit tenant). A tenant job on this queue fails without running.
 */
export function workSystemJobs<T, R = unknown>(boss: JobBoss, name: string, options: Omit<TenantWorkOptions, 'tenancy'>, handler: (job: SystemJob<T>) => Promise<R> | R): Promise<string> {
  return boss.work(name, workOptions(options), async (jobs: BossJob[]) => {
    const job = single(jobs);
    const scope = systemScopeOf({ id: job.id, queue: job.name, data: job.data });
    return TenantContext.exit(() => handler({ id: job.id, name: job.name, reason: scope.system, data: scope.data as T }));
  });
}

function workOptions(options: { work?: object }): object {
  if (options?.work && 'batchSize' in options.work) throw new TypeError('`batchSize` is not supported: each job runs in its own tenant context');
  return { ...options?.work, batchSize: 1 };
}

function single(jobs: BossJob[]): BossJob {
  if (!Array.isArray(jobs) || jobs.length !== 1) throw new TypeError('expected one job per fetch (batchSize 1)');
  return jobs[0]!;
}
