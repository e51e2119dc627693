import diagnostics from 'node:diagnostics_channel';
import type { GuardViolation } from './errors.js';

/**
 * What the SQL guard observes, on node:diagnostics_channel (see src/events.ts for the pattern):
 * every violation it finds (refused in strict mode, let through otherwise) and every statement
 * that ran unchecked inside `withAdminBypass`.
 *
 * @example
 * import diagnostics from 'node:diagnostics_channel';
 * diagnostics.subscribe('linkbay-multitenant:guard-blocked', (event) => log.error(event));
 */
export const GUARD_CHANNELS = {
  blocked: 'linkbay-multitenant:guard-blocked',
  bypass: 'linkbay-multitenant:guard-bypass',
} as const;

export interface GuardViolationEvent {
  /** The statement text (never its parameter values). */
  readonly text: string;
  /** The tenant the statement was checked for; undefined when there was none. */
  readonly tenantId: string | undefined;
  readonly violations: readonly GuardViolation[];
  /** true in strict mode (the statement was refused), false when it was reported and let run. */
  readonly blocked: boolean;
}

export interface GuardBypassEvent {
  readonly text: string;
  readonly tenantId: string | undefined;
  /** The reason given to `withAdminBypass`, if any. */
  readonly reason: string | undefined;
}

export const guardBlockedChannel = diagnostics.channel(GUARD_CHANNELS.blocked);
export const guardBypassChannel = diagnostics.channel(GUARD_CHANNELS.bypass);
