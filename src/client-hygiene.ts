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

const guardedPools = new WeakSet<object>();

/**
 * `pool.connect()`, once the pool is made to give every client it creates an 'error' listener of
 * its own. pg-pool removes its listener from a new client as it hands the client over, and the
 * caller gets it a microtask later: a backend terminated in the same read as its ReadyForQuery (a
 * server restarting, pg_terminate_backend while connections open) emits 'error' in between, with no
 * listener, an uncaught exception that ends the process (seen in CI: test/pipeline-mode's workload,
 * backends killed at random). The listener ignores it; the lease's own (watchClient) sees what comes
 * once it holds the client, and the next query on a dead one fails as it should.
 */
export async function connectClient<C>(pool: { connect(): Promise<C> }): Promise<C> {
  const events = pool as unknown as { on?: (event: 'connect', listener: (client: { on?: (event: 'error', fn: () => void) => unknown }) => void) => unknown };
  if (!guardedPools.has(pool) && typeof events.on === 'function') {
    guardedPools.add(pool);
    events.on('connect', (client) => client.on?.('error', ignore));
  }
  const client = await pool.connect();
  // Dead on arrival (that error came before we held it): destroyed, and said so, rather than used.
  const state = client as unknown as { _queryable?: boolean; _ending?: boolean; release?: (error?: Error) => void };
  if (state._queryable === false || state._ending === true) {
    const error = Object.assign(new Error('the connection was lost as it opened (its backend was terminated)'), { code: '08006' });
    state.release?.(error);
    throw error;
  }
  return client;
}

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
