import type { CompiledQuery, DatabaseConnection, QueryResult as KyselyResult, TransactionSettings } from 'kysely';
import type { QueryResult } from 'pg';
import type { TenantDb } from '../tenant-db.js';
import { holdTenantTransaction, type HeldTransaction } from '../held-transaction.js';

/**
 * One Kysely "connection" for one tenant. It holds no pg client of its own: outside a transaction
 * each query is one `db.tenantQuery` (one round trip, the tenant riding with it); between
 * beginTransaction and commit/rollback the queries go to one `db.withTenantTransaction`, whose
 * callback stays open until Kysely ends the transaction.
 */
export class TenantConnection implements DatabaseConnection {
  private open: HeldTransaction | undefined;

  constructor(
    private readonly db: TenantDb,
    /** Canonical, bound when Kysely acquired the connection. */
    readonly tenantId: string,
  ) {}

  async executeQuery<R>(compiled: CompiledQuery): Promise<KyselyResult<R>> {
    const query = { text: compiled.sql, values: compiled.parameters };
    const result = this.open ? await this.open.tx.query(query) : await this.db.tenantQuery(this.tenantId, query);
    return toKyselyResult<R>(result);
  }

  async *streamQuery<R>(): AsyncIterableIterator<KyselyResult<R>> {
    throw new TypeError('streaming is not supported through the tenant dialect: page with limit/offset or keyset instead');
  }

  async begin(settings: TransactionSettings): Promise<void> {
    if (this.open) throw new TypeError('a tenant transaction is already open on this Kysely connection');
    this.open = await holdTenantTransaction(this.db, this.tenantId, transactionOptions(settings));
  }

  async commit(): Promise<void> {
    await this.take().commit(); // COMMIT, or TransactionAbortedError when a statement failed and was caught
  }

  async rollback(): Promise<void> {
    await this.take().rollback();
  }

  /** SAVEPOINT / ROLLBACK TO / RELEASE, compiled by Kysely, inside the open transaction. */
  async savepointCommand(compiled: CompiledQuery): Promise<void> {
    if (!this.open) throw new TypeError('savepoints need an open transaction');
    await this.open.tx.query({ text: compiled.sql, values: compiled.parameters });
  }

  /** Whether a transaction is still open (released connections must not hold one). */
  get inTransaction(): boolean {
    return this.open !== undefined;
  }

  private take(): HeldTransaction {
    const open = this.open;
    if (!open) throw new TypeError('no tenant transaction is open on this Kysely connection');
    this.open = undefined;
    return open;
  }
}

/** pg's result as Kysely's PostgresDriver reports it. */
function toKyselyResult<R>(result: QueryResult): KyselyResult<R> {
  const { command, rowCount, rows } = result;
  const counted = command === 'INSERT' || command === 'UPDATE' || command === 'DELETE' || command === 'MERGE';
  return { numAffectedRows: counted && rowCount !== null ? BigInt(rowCount) : undefined, rows: (rows ?? []) as R[] };
}

/** Kysely's settings as withTenantTransaction options; what PostgreSQL cannot do is refused. */
function transactionOptions(settings: TransactionSettings): { isolationLevel?: 'read committed' | 'repeatable read' | 'serializable'; readOnly?: boolean } {
  const { isolationLevel, accessMode } = settings;
  if (isolationLevel === 'read uncommitted' || isolationLevel === 'snapshot') {
    throw new TypeError(`isolation level "${isolationLevel}" is not supported by the tenant dialect (PostgreSQL reads it as read committed, or has none)`);
  }
  return {
    ...(isolationLevel ? { isolationLevel } : {}),
    ...(accessMode === 'read only' ? { readOnly: true } : {}),
  };
}
