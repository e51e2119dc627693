import type { QueryResult } from 'pg';
import type { TenantDb } from '../tenant-db.js';
import { holdTenantTransaction, type HeldTransaction } from '../held-transaction.js';
import type { IsolationLevel, QueryInput } from '../transaction.js';

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

/** One Drizzle transaction, held open as one tenant transaction between Drizzle's begin and commit. */
export class TenantDrizzleTransactionClient {
  private open: HeldTransaction | undefined;
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
      await (text === 'rollback' ? open.rollback() : open.commit());
      return { command: text.toUpperCase(), rows: [] };
    }
    return this.open.tx.query(query, values);
  }

  /** Drizzle releases its client after commit or rollback; one still open is rolled back. */
  release(): void {
    if (!this.open) return;
    const open = this.open;
    this.open = undefined;
    open.rollback().catch(() => undefined);
  }

  private async begin(isolationLevel: IsolationLevel | 'read uncommitted' | undefined, accessMode: string | undefined, deferrable: string | undefined): Promise<void> {
    if (isolationLevel === 'read uncommitted') throw new TypeError('isolation level "read uncommitted" is not supported (PostgreSQL runs it as read committed)');
    if (deferrable) throw new TypeError('`deferrable` is not supported by tenant transactions');
    const options = { ...(isolationLevel ? { isolationLevel } : {}), ...(accessMode === 'read only' ? { readOnly: true } : {}) };
    this.open = await holdTenantTransaction(this.db, this.tenantId, options);
  }
}
