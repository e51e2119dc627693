import type pg from 'pg';
import { tenantQuery, type TenantClient, type TenantPool } from '../../src/index.js';

/**
 * A pool wrapper that counts what the library does with the real pool: connects, round trips
 * (ReadyForQuery messages from the server: one per Sync or simple query), releases and destroys.
 * Counting starts after the library has read the pool's plan classes (src/plan-classes.ts: one
 * query per pool, the first time it is used), so the counts are those of the statements under test.
 */
export async function observePool(pool: pg.Pool, options: { hideErrorEvents?: boolean } = {}) {
  const observed = wrap(pool, options.hideErrorEvents ?? false);
  await tenantQuery(observed.pool, '00000000-0000-4000-8000-00000000feed', 'SELECT 1');
  for (const key of Object.keys(observed.counts) as Array<keyof typeof observed.counts>) observed.counts[key] = 0;
  return observed;
}

/**
 * With `hideErrorEvents` the clients handed out have no `on`/`removeListener` (TenantClient allows
 * that): the library cannot hear of a dead connection from its 'error' event and learns of it from
 * the next statement it sends, e.g. its ROLLBACK. The errors are recorded in `connectionErrors`.
 */
function wrap(pool: pg.Pool, hideErrorEvents: boolean) {
  const counts = { connects: 0, roundTrips: 0, released: 0, destroyed: 0 };
  const connectionErrors: Error[] = [];
  const wrapped: TenantPool = {
    async connect() {
      counts.connects += 1;
      const client = await pool.connect();
      const connection = (client as unknown as { connection: { on(e: string, f: () => void): void; removeListener(e: string, f: () => void): void } }).connection;
      const onReady = () => {
        counts.roundTrips += 1;
      };
      connection.on('readyForQuery', onReady);
      // pg-pool removes its own listener while a client is checked out: without one an 'error' would crash.
      const record = (error: Error) => connectionErrors.push(error);
      if (hideErrorEvents) client.on('error', record);
      const view: TenantClient & { connection: unknown; readyForQuery: boolean; processID: number } = {
        query: (config: any, values?: any) => client.query(config, values),
        release(destroy?: Error | boolean) {
          connection.removeListener('readyForQuery', onReady);
          client.removeListener('error', record);
          if (destroy) counts.destroyed += 1;
          else counts.released += 1;
          client.release(destroy as Error | undefined);
        },
        getTransactionStatus: () => (client as unknown as { getTransactionStatus(): string | null }).getTransactionStatus(),
        on: (event, listener) => client.on(event, listener),
        removeListener: (event, listener) => client.removeListener(event, listener),
        get connection() {
          return connection;
        },
        get readyForQuery() {
          return (client as unknown as { readyForQuery: boolean }).readyForQuery;
        },
        get processID() {
          return (client as unknown as { processID: number }).processID;
        },
      };
      if (hideErrorEvents) {
        delete (view as { on?: unknown }).on;
        delete (view as { removeListener?: unknown }).removeListener;
      }
      return view;
    },
  };
  return { pool: wrapped, counts, connectionErrors };
}
