import type pg from 'pg';
import { tenantQuery, type TenantClient, type TenantPool } from '../../src/index.js';

/**
 * A pool wrapper that counts what the library does with the real pool: connects, round trips
 * (ReadyForQuery messages from the server: one per Sync or simple query), releases and destroys.
 * Counting starts after the library has read the pool's plan classes (src/plan-classes.ts: one
 * query per pool, the first time it is used), so the counts are those of the statements under test.
 */
export async function observePool(pool: pg.Pool) {
  const observed = wrap(pool);
  await tenantQuery(observed.pool, '00000000-0000-4000-8000-00000000feed', 'SELECT 1');
  for (const key of Object.keys(observed.counts) as Array<keyof typeof observed.counts>) observed.counts[key] = 0;
  return observed;
}

function wrap(pool: pg.Pool) {
  const counts = { connects: 0, roundTrips: 0, released: 0, destroyed: 0 };
  const wrapped: TenantPool = {
    async connect() {
      counts.connects += 1;
      const client = await pool.connect();
      const connection = (client as unknown as { connection: { on(e: string, f: () => void): void; removeListener(e: string, f: () => void): void } }).connection;
      const onReady = () => {
        counts.roundTrips += 1;
      };
      connection.on('readyForQuery', onReady);
      const view: TenantClient & { connection: unknown; readyForQuery: boolean; processID: number } = {
        query: (config: any, values?: any) => client.query(config, values),
        release(destroy?: Error | boolean) {
          connection.removeListener('readyForQuery', onReady);
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
      return view;
    },
  };
  return { pool: wrapped, counts };
}
