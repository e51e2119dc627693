import type { QueryResult } from 'pg';
import type { TenantDb } from '../tenant-db.js';
import type { IsolationLevel, QueryInput, TenantTransaction } from '../transaction.js';

/**
 * What Drizzle's node-postgres session is given as its client. Outside a transaction each query is
 * one `db.tenantQuery`. Drizzle treats a client whose class name contains "Pool" as a pool (its
 * session.transaction checks `constructor.name.includes("Pool")`): for `drizzle.transaction(fn)` it
 * calls `connect()`, sends `begin ...`, fn's statements, `commit` or `rollback`, then `release()`.
 * The client `connect()` returns maps exactly that sequence onto one `db.withTenantTransaction`.
 */
export class TenantDrizzlePool {
  constructor(
    private readonly db: TenantDb,
    private readonly tenantId: string | number | bigint | undefined,
  ) {}

  query(query: QueryInput, values?: readonly unknown[]): Promise<QueryResult> {
    return this.db.tenantQuery(this.tenantId, query, values);
  }

  async connect(): Promise<TenantDrizzleTransactionClient> {
    // The tenant is read now (TenantContext's, unless given), before anything is sent.
    return new TenantDrizzleTransactionClient(this.db, this.db.tenantIdOf(this.tenantId));
  }
}

/** Drizzle's begin, as its PgTransaction writes it (getTransactionConfigSQL). */
const BEGIN = /^begin(?: isolation level (read uncommitted|read committed|repeatable read|serializable))?(?: (read only|read write))?(?: (deferrable|not deferrable))?$/;

/** Rejects the transaction callback on Drizzle's rollback; never escapes this module. */
const ROLLBACK = Symbol('drizzle rollback');

/** One Drizzle transaction, held open as one tenant transaction between Drizzle's begin and commit. */
export class TenantDrizzleTransactionClient {
  private open: { tx: TenantTransaction; finish(reason?: typeof ROLLBACK): void; done: Promise<void> } | undefined;
  private ended = false;

  constructor(
    private readonly db: TenantDb,
    readonly tenantId: string,
  ) {}

  async query(query: QueryInput, values?: readonly unknown[]): Promise<QueryResult | { command: string; rows: never[] }> {
    const text = (typeof query === 'string' ? query : query.text).trim();
    if (!this.open) {
      if (this.ended) throw new TypeError('this Drizzle transaction has ended');
      const begin = BEGIN.exec(text);
      if (!begin) throw new TypeError('a Drizzle transaction client must start with Drizzle\'s begin');
      await this.begin(begin[1] as IsolationLevel | 'read uncommitted' | undefined, begin[2], begin[3]);
      return { command: 'BEGIN', rows: [] };
    }
    // Drizzle's own end of the transaction (session.transaction sends exactly these).
    if (text === 'commit' || text === 'rollback') {
      const open = this.open;
      this.open = undefined;
      this.ended = true;
      open.finish(text === 'rollback' ? ROLLBACK : undefined);
      await open.done.catch((error: unknown) => {
        if (error !== ROLLBACK) throw error;
      });
      return { command: text.toUpperCase(), rows: [] };
    }
    return this.open.tx.query(query, values);
  }

  /** Drizzle releases its client after commit or rollback; one still open is rolled back. */
  release(): void {
    if (!this.open) return;
    const open = this.open;
    this.open = undefined;
    open.finish(ROLLBACK);
    open.done.catch(() => undefined);
  }

  private async begin(isolationLevel: IsolationLevel | 'read uncommitted' | undefined, accessMode: string | undefined, deferrable: string | undefined): Promise<void> {
    if (isolationLevel === 'read uncommitted') throw new TypeError('isolation level "read uncommitted" is not supported (PostgreSQL runs it as read committed)');
    if (deferrable) throw new TypeError('`deferrable` is not supported by tenant transactions');
    const options = { ...(isolationLevel ? { isolationLevel } : {}), ...(accessMode === 'read only' ? { readOnly: true } : {}) };
    let ready!: (tx: TenantTransaction) => void;
    const opened = new Promise<TenantTransaction>((resolve) => (ready = resolve));
    let finish!: (reason?: typeof ROLLBACK) => void;
    const ended = new Promise<void>((resolve, reject) => (finish = (reason) => (reason ? reject(reason) : resolve())));
    const done = this.db.withTenantTransaction(this.tenantId, (tx) => {
      ready(tx);
      return ended;
    }, options);
    // withTenantTransaction can fail before it calls back (pool exhausted, connection refused).
    const tx = await Promise.race([opened, done.then(() => Promise.reject(new Error('the tenant transaction ended before it began')))]);
    this.open = { tx, finish, done };
  }
}
