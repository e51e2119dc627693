import { clientDestroyedChannel, type ClientDestroyedEvent } from './events.js';
import type { TenantClient } from './pool.js';

const SETTLE_TIMEOUT_MS = 5_000;

/**
 * Resolves once the server has answered everything sent on `client` (ReadyForQuery), so that its
 * transaction status is current. node-postgres reports a statement's error as soon as the
 * ErrorResponse arrives, before the ReadyForQuery that carries the new status.
 */
export function settled(client: TenantClient): Promise<void> {
  const internal = client as unknown as {
    readyForQuery?: boolean;
    connection?: { once(event: string, fn: () => void): void; removeListener(event: string, fn: () => void): void };
  };
  if (internal.readyForQuery !== false || !internal.connection) return Promise.resolve();
  const connection = internal.connection;
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      for (const event of ['readyForQuery', 'end', 'error']) connection.removeListener(event, done);
      resolve();
    };
    const timer = setTimeout(done, SETTLE_TIMEOUT_MS);
    for (const event of ['readyForQuery', 'end', 'error']) connection.once(event, done);
  });
}

/** Why a client is destroyed instead of returned, and the error that showed it. */
export interface ReleaseFailure {
  readonly reason: ClientDestroyedEvent['reason'];
  readonly error?: unknown;
}

/**
 * Returns the client to its pool only when its session is clean: no open or failed transaction
 * and no connection error. Anything else destroys it (pg-pool's `release(error)`), because the next
 * borrower would inherit the previous tenant's transaction.
 */
export function releaseClient(client: TenantClient, tenantId: string, failure?: ReleaseFailure): void {
  let reason = failure?.reason;
  if (!reason) {
    const status = client.getTransactionStatus?.();
    if (status === 'T' || status === 'E') reason = 'not-idle';
  }
  if (!reason) {
    client.release();
    return;
  }
  const error = failure?.error instanceof Error ? failure.error : new Error(`linkbay-multitenant: client destroyed (${reason})`);
  // pg may still emit 'error' on a client it is ending (a backend killed meanwhile, the FATAL of a
  // terminated connection arriving after the lease stopped watching): with no listener left that
  // would crash the process. Nobody needs it any more.
  client.on?.('error', ignore);
  client.release(error);
  if (clientDestroyedChannel.hasSubscribers) {
    clientDestroyedChannel.publish({ tenantId, reason, error: failure?.error } satisfies ClientDestroyedEvent);
  }
}

const ignore = (): void => undefined;

/**
 * Watches a checked-out client for connection errors (a killed backend, a reset socket). pg emits
 * them as 'error' events, which would crash the process with no listener attached.
 */
export function watchClient(client: TenantClient): { readonly error: Error | undefined; stop(): void } {
  let error: Error | undefined;
  const listener = (e: Error) => {
    error = e;
  };
  client.on?.('error', listener);
  return {
    get error() {
      return error;
    },
    stop: () => client.removeListener?.('error', listener),
  };
}
