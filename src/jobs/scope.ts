import { DEFAULT_TENANCY, type TenancyConfig } from '../config.js';
import { TenantError } from '../errors.js';
import { readEnvelope } from './envelope.js';
import { JobScopeError } from './errors.js';
import { jobRefusedChannel, systemJobChannel, type JobRefusedEvent, type SystemJobEvent } from './events.js';

/** A received job, as any queue hands it over. */
export interface ReceivedJob {
  readonly id: string;
  /** The queue it came from (published in events). */
  readonly queue: string;
  readonly data: unknown;
}

/**
 * The tenant of a job for a tenant worker, or a throw (published on JOB_CHANNELS.refused): no
 * tenant, an id invalid for `tenancy`, or a system job. The caller runs nothing then.
 */
export function tenantScopeOf(job: ReceivedJob, tenancy: TenancyConfig): { tenantId: string; data: unknown } {
  return refusing(job, () => {
    const read = readEnvelope(job.data, tenancy);
    if ('system' in read) throw new JobScopeError('a system job reached a tenant worker: run it with a system worker');
    return read;
  });
}

/** The reason of a system job for a system worker (published as started), or a throw for a tenant job. */
export function systemScopeOf(job: ReceivedJob): { system: string; data: unknown } {
  const scope = refusing(job, () => {
    const read = readEnvelope(job.data, DEFAULT_TENANCY);
    if (!('system' in read)) throw new JobScopeError('a tenant job reached a system worker: run it with a tenant worker');
    return read;
  });
  publishSystem({ phase: 'started', queue: job.queue, jobId: job.id, reason: scope.system });
  return scope;
}

export function publishSystem(event: SystemJobEvent): void {
  if (systemJobChannel.hasSubscribers) systemJobChannel.publish(event);
}

function refusing<S>(job: ReceivedJob, read: () => S): S {
  try {
    return read();
  } catch (error) {
    if (jobRefusedChannel.hasSubscribers) {
      jobRefusedChannel.publish({ queue: job.queue, jobId: job.id, code: error instanceof TenantError ? error.code : 'unknown' } satisfies JobRefusedEvent);
    }
    throw error;
  }
}
