import { connectClient, releaseClient, watchClient, type ReleaseFailure } from './client-hygiene.js';
import { transactionChannel, type TransactionEvent } from './events.js';
import type { TenantClient, TenantPool } from './pool.js';

/** One client checked out for one tenant's transaction, as the work sees it. */
export interface Lease {
  readonly client: TenantClient;
  /** A connection error seen while leased (a killed backend, a reset socket), if any. */
  readonly connectionError: Error | undefined;
  /** How the transaction ended, for the event. Default 'rollback': anything not said otherwise. */
  outcome: TransactionEvent['outcome'];
  /** Statements sent, for the event. */
  statements: number;
  /** Set to destroy the client on release instead of returning it, with the reason. */
  destroy: ReleaseFailure | undefined;
}

/**
 * The lease lifecycle of both tenant functions, written once: connect → watch for connection
 * errors → `work` → release (destroyed when `work` said so, when the connection failed, or when the
 * session is not idle: src/client-hygiene.ts) → publish the transaction event. `started` is when
 * the call began (before any await), so the event's duration covers the wait for a client.
 */
export async function withLease<T>(
  pool: TenantPool,
  tenantId: string,
  single: boolean,
  started: number,
  work: (lease: Lease) => Promise<T>,
): Promise<T> {
  const client = await connectClient(pool);
  const watch = watchClient(client);
  const lease: Lease = {
    client,
    get connectionError() {
      return watch.error;
    },
    outcome: 'rollback',
    statements: single ? 1 : 0,
    destroy: undefined,
  };
  try {
    return await work(lease);
  } finally {
    watch.stop();
    releaseClient(client, tenantId, lease.destroy ?? (watch.error ? { reason: 'connection-error', error: watch.error } : undefined));
    if (transactionChannel.hasSubscribers) {
      transactionChannel.publish({
        tenantId,
        outcome: lease.outcome,
        statements: lease.statements,
        durationMs: performance.now() - started,
        single,
      } satisfies TransactionEvent);
    }
  }
}
