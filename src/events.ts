import diagnostics from 'node:diagnostics_channel';

/**
 * What the core observes, published on node:diagnostics_channel so that the edges (metrics, logs)
 * subscribe and the core imports neither prom-client nor a logger. Publishing to a channel without
 * subscribers costs a property check.
 *
 * @example
 * import diagnostics from 'node:diagnostics_channel';
 * diagnostics.subscribe('linkbay-multitenant:client-destroyed', (event) => log.warn(event));
 */
export const CHANNELS = {
  transaction: 'linkbay-multitenant:transaction',
  clientDestroyed: 'linkbay-multitenant:client-destroyed',
  resolution: 'linkbay-multitenant:tenant-resolution',
  tenantOperation: 'linkbay-multitenant:tenant-operation',
} as const;

export interface ResolutionEvent {
  /** `resolved`, or why not: `missing` (400), `invalid` (400), `conflict` (400), `unauthenticated` (401, credentials not verified), `unknown` (404), `inactive` (403), `error`. */
  readonly outcome: 'resolved' | 'missing' | 'invalid' | 'conflict' | 'unauthenticated' | 'unknown' | 'inactive' | 'error';
  /** Strategy that named the tenant (the first, when several agreed). */
  readonly strategy?: string;
  readonly tenantId?: string;
  readonly durationMs: number;
}

export interface TransactionEvent {
  readonly tenantId: string;
  /** `commit`, `rollback` (fn threw or a statement failed), or `empty` (fn sent nothing). */
  readonly outcome: 'commit' | 'rollback' | 'empty';
  readonly statements: number;
  readonly durationMs: number;
  /** true for tenantQuery's single-statement batches. */
  readonly single: boolean;
}

export interface ClientDestroyedEvent {
  readonly tenantId: string;
  /** Why the connection was not returned to the pool. */
  readonly reason: 'rollback-failed' | 'not-idle' | 'connection-error';
  readonly error?: unknown;
}

/** The lifecycle operations an operator runs (TenantAdminService, purge, portability, moves). */
export const TENANT_OPERATIONS = ['create', 'update', 'suspend', 'activate', 'delete', 'purge', 'export', 'import', 'move'] as const;
export type TenantOperation = (typeof TENANT_OPERATIONS)[number];

/** One lifecycle operation ended (src/tenant-operations.ts). */
export interface TenantOperationEvent {
  readonly operation: TenantOperation;
  /**
   * `succeeded`; `refused`: the library said no to the request (bad input, unknown tenant, a conflict:
   * a TenantError of status below 500), nothing was changed; `failed`: it could not be done (a
   * database error, an onboarding step or a move that failed, a purge left incomplete).
   */
  readonly outcome: 'succeeded' | 'refused' | 'failed';
  /** The tenant's canonical id when known (never the raw input of a refused request). */
  readonly tenantId: string | null;
  /** The error's code (LBMT_..., a SQLSTATE) when not succeeded; a note on a success (`LBMT_MOVE_SOURCE_KEPT`). */
  readonly code?: string;
  readonly durationMs: number;
}

export const transactionChannel = diagnostics.channel(CHANNELS.transaction);
export const clientDestroyedChannel = diagnostics.channel(CHANNELS.clientDestroyed);
export const resolutionChannel = diagnostics.channel(CHANNELS.resolution);
export const tenantOperationChannel = diagnostics.channel(CHANNELS.tenantOperation);
