/**
 * linkbay-multitenant/jobs: background jobs that keep their tenant. pg-boss and BullMQ helpers (both
 * optional peers: these take any object with their `send`/`work` or `add`), over a queue-neutral
 * envelope that stamps the canonical tenant id in the job's data.
 */
export { sendTenantJob, sendSystemJob, workTenantJobs, workSystemJobs, type JobBoss, type BossJob, type TenantJob, type SystemJob, type TenantJobSendOptions, type TenantWorkOptions } from './pg-boss.js';
export { tenantEnvelope, systemEnvelope, readEnvelope, type JobEnvelope } from './envelope.js';
export { JobTenantMissingError, JobScopeError } from './errors.js';
export { JOB_CHANNELS, type SystemJobEvent, type JobRefusedEvent } from './events.js';
export { addTenantJob, addSystemJob, tenantJobProcessor, systemJobProcessor, RefusedJobError, type BullQueue, type BullJob } from './bullmq.js';
