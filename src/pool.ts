/**
 * What the library needs of a node-postgres pool, its clients, and anything that runs a query.
 * Structural, so any pool whose clients look like pg's works (pg.Pool, pg-pool, a pool wrapper).
 */

/** The subset of a node-postgres PoolClient the library uses. */
export interface TenantClient {
  query(config: any, values?: any): any;
  /** pg-pool: `release()` returns the client to the pool, `release(error)` destroys it. */
  release(destroy?: Error | boolean): void;
  /** 'I' idle, 'T' in a transaction, 'E' in a failed transaction (pg >= 8.19). */
  getTransactionStatus?(): string | null;
  on?(event: 'error', listener: (error: Error) => void): unknown;
  removeListener?(event: 'error', listener: (error: Error) => void): unknown;
}

/** A pool to lease tenant clients from: `pg.Pool` fits. */
export interface TenantPool {
  connect(): Promise<TenantClient>;
}

/** The rows (and, when the driver says, the count) of one statement. */
export interface QueryOutput {
  readonly rows: any[];
  readonly rowCount?: number | null;
}

/**
 * Anything with pg's `query(text, values)`: a pg.Pool, a pool client, a pg.Client. Used for the
 * library's own administrative reads and writes (registry, doctor, isolation checks), never for
 * tenant data, which goes through a tenant transaction.
 */
export interface Queryable {
  query(text: string, values?: unknown[]): Promise<QueryOutput>;
}
