import type pg from 'pg';
import type { TenantClient, TenantPool } from '../../src/index.js';

/**
 * A pool wrapper that counts what the library does with the real pool: connects, round trips
 * (ReadyForQuery messages from the server: one per Sync or simple query), releases and destroys.
 */
export function observePool(pool: pg.Pool) {
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
