import type { CompiledQuery, DatabaseConnection, QueryResult as KyselyResult, TransactionSettings } from 'kysely';
import type { QueryResult } from 'pg';
import type { TenantDb } from '../tenant-db.js';
import type { TenantTransaction } from '../transaction.js';

/** Rejects the transaction callback on Kysely's rollback; never escapes this module. */
const ROLLBACK = Symbol('kysely rollback');

/** A tenant transaction opened by Kysely's beginTransaction, held open until commit or rollback. */
interface OpenTransaction {
  readonly tx: TenantTransaction;
  /** Settles the callback: undefined commits, ROLLBACK rolls back. */
  finish(reason?: typeof ROLLBACK): void;
  /** The withTenantTransaction call: settles once COMMIT or ROLLBACK has been answered. */
  readonly done: Promise<void>;
}

/**
 * One Kysely "connection" for one tenant. It holds no pg client of its own: outside a transaction
 * each query is one `db.tenantQuery` (one round trip, the tenant riding with it); between
 * beginTransaction and commit/rollback the queries go to one `db.withTenantTransaction`, whose
 * callback stays open until Kysely ends the transaction.
 */
export class TenantConnection implements DatabaseConnection {
  private open: OpenTransaction | undefined;

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

  // eslint-disable-next-line require-yield
  async *streamQuery<R>(): AsyncIterableIterator<KyselyResult<R>> {
    throw new TypeError('streaming is not supported through the tenant dialect: page with limit/offset or keyset instead');
  }

  async begin(settings: TransactionSettings): Promise<void> {
    if (this.open) throw new TypeError('a tenant transaction is already open on this Kysely connection');
    const options = transactionOptions(settings);
    let ready!: (open: OpenTransaction) => void;
    const opened = new Promise<OpenTransaction>((resolve) => (ready = resolve));
    let finish!: (reason?: typeof ROLLBACK) => void;
    const ended = new Promise<void>((resolve, reject) => (finish = (reason) => (reason ? reject(reason) : resolve())));
    const done = this.db.withTenantTransaction(this.tenantId, (tx) => {
      ready({ tx, finish, done });
      return ended;
    }, options);
    // withTenantTransaction can fail before it calls back (pool exhausted, connection refused).
    this.open = await Promise.race([opened, done.then(() => Promise.reject(new Error('the tenant transaction ended before it began')))]);
  }

  async commit(): Promise<void> {
    const open = this.take();
    open.finish();
    await open.done; // COMMIT, or TransactionAbortedError when a statement failed and was caught
  }

  async rollback(): Promise<void> {
    const open = this.take();
    open.finish(ROLLBACK);
    try {
      await open.done;
    } catch (error) {
      if (error !== ROLLBACK) throw error;
    }
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

  private take(): OpenTransaction {
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
