import { connectClient, releaseClient, settled, watchClient } from './client-hygiene.js';
import type { Queryable, TenantClient, TenantPool } from './pool.js';

/** What administrative writes run on: a pool (`connect`) or one client (`query`). */
export type AdminDatabase = Queryable | (Queryable & TenantPool);

/**
 * Runs `fn` in one transaction on the admin database, so that a change and its audit row commit
 * together or not at all. A pool lends a client for it (destroyed, not returned, when its session is
 * not clean afterwards); a single client (pg.Client, a PoolClient) is used as it is, and when it is
 * already inside a transaction `fn` joins that one (the caller commits).
 */
export async function inAdminTransaction<T>(db: AdminDatabase, fn: (tx: Queryable) => Promise<T>): Promise<T> {
  // A client (pg.Client has `connect` too, to open itself) says what transaction it is in; a pool does not.
  const isClient = typeof (db as Partial<TenantClient>).getTransactionStatus === 'function';
  if (!isClient && typeof (db as TenantPool).connect === 'function') {
    const client = await connectClient(db as TenantPool);
    const watch = watchClient(client);
    let failure: { reason: 'rollback-failed' | 'connection-error'; error: unknown } | undefined;
    try {
      return await run(client as TenantClient & Queryable, fn);
    } catch (error) {
      if (watch.error) failure = { reason: 'connection-error', error: watch.error };
      throw error;
    } finally {
      watch.stop();
      // An open or failed transaction left on it (a ROLLBACK that did not arrive) destroys it.
      releaseClient(client, '', failure);
    }
  }
  const client = db as Queryable & Partial<TenantClient>;
  // Something with only `query` may be a pool in disguise: BEGIN and COMMIT could then go to
  // different connections, and the change would not be atomic with its audit row.
  if (!isClient) {
    throw new TypeError('the admin database must be a pool (`connect`) or one client (pg.Client, a PoolClient): a change and its audit row are one transaction');
  }
  if (client.getTransactionStatus!() === 'T') return fn(client);
  return run(client, fn);
}

async function run<T>(client: Queryable & Partial<TenantClient>, fn: (tx: Queryable) => Promise<T>): Promise<T> {
  await client.query('BEGIN');
  try {
    const value = await fn(client);
    const commit = (await client.query('COMMIT')) as { command?: string };
    // A statement failed inside fn and its error was caught there: nothing was committed.
    if (commit?.command === 'ROLLBACK') throw new Error('the admin transaction was rolled back: a statement in it failed');
    return value;
  } catch (error) {
    await settled(client as TenantClient);
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}
