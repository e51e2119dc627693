import diagnostics from 'node:diagnostics_channel';

/** What the job helpers publish on node:diagnostics_channel (see src/events.ts for the core's). */
export const JOB_CHANNELS = {
  /** A system job (no tenant) was sent or started: who runs unscoped work, and why, is observable. */
  system: 'linkbay-multitenant:system-job',
  /** A job was failed without running its handler (no tenant, an invalid one, or the wrong worker). */
  refused: 'linkbay-multitenant:job-refused',
} as const;

export interface SystemJobEvent {
  readonly phase: 'sent' | 'started';
  readonly queue: string;
  readonly jobId: string | null;
  readonly reason: string;
}

export interface JobRefusedEvent {
  readonly queue: string;
  readonly jobId: string;
  /** The error's code: LBMT_JOB_TENANT_MISSING, LBMT_INVALID_TENANT_ID or LBMT_JOB_SCOPE_MISMATCH. */
  readonly code: string;
}

export const systemJobChannel = diagnostics.channel(JOB_CHANNELS.system);
export const jobRefusedChannel = diagnostics.channel(JOB_CHANNELS.refused);
