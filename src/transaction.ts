import { AsyncLocalStorage } from 'node:async_hooks';
import type { QueryResult, QueryResultRow } from 'pg';
import { DEFAULT_TENANCY, type TenancyConfig } from './config.js';
import { TenantContext } from './context.js';
import {
  mapDatabaseError,
  TenantMismatchError,
  TenantRequiredError,
  TransactionAbortedError,
  TransactionClosedError,
  TransactionEndedError,
} from './errors.js';
import { withLease, type Lease } from './lease.js';
import { canonicalTenantId } from './tenant-id.js';
import type { BatchOptions, PrepareMode, PreludeStatement } from './pipeline.js';
import { send } from './send.js';
import { batchOptions, beginStatement, checkStatementTimeout, forceCustomPlans, limitsOf, prepareMode, tenantStatement, toStatement, type IsolationLevel, type QueryInput } from './prelude.js';
import { checkLimits, type TenantLimits } from './limits.js';
import { WriteGateAnswer } from './write-gate.js';
import type { StatementConfig } from './pipeline.js';
import { runCitusTenantQuery } from './citus/batch.js';

export type { IsolationLevel, QueryInput } from './prelude.js';
import { settled, type ReleaseFailure } from './client-hygiene.js';
import type { TenantClient, TenantPool } from './pool.js';

export type { TenantClient, TenantPool } from './pool.js';


export interface TenantQueryOptions {
  /** Setting name and tenant id type. Default: `defineTenancy()` defaults (`app.tenant_id`, uuid). */
  readonly tenancy?: TenancyConfig;
  /**
   * Named prepared statements: `'tenant'` (default) for the library's BEGIN and set_config and for
   * your statements, per plan class (tenants the planner estimates alike share plans); `'all'` for
   * every statement, one plan shared by all tenants (`true` means `'all'`); `'none'` (or `false`)
   * for none — PgBouncer before 1.21 in transaction mode. See PrepareMode.
   */
  readonly prepare?: PrepareMode | boolean;
  /** `SET LOCAL statement_timeout` for this transaction, in milliseconds. */
  readonly statementTimeoutMs?: number;
  /**
   * Transaction-local limits (src/limits.ts: statement, lock and idle timeouts, work_mem), sent in
   * the tenant's prelude: no extra round trip. `statementTimeoutMs` wins over `limits.statementTimeoutMs`.
   */
  readonly limits?: TenantLimits;
  /** Run as a READ ONLY transaction. */
  readonly readOnly?: boolean;
  /**
   * Checks every statement before it is sent (the SQL guard, `createQueryGuard`). It throws to
   * refuse a statement; nothing is sent then.
   */
  readonly guard?: StatementGuard;
}

/** What the transaction functions need of a SQL guard. */
export interface StatementGuard {
  check(text: string, values: readonly unknown[], tenantId: string): void;
}

export interface TenantTransactionOptions extends TenantQueryOptions {
  /** Default: the server's default (read committed). */
  readonly isolationLevel?: IsolationLevel;
}


/** The handle `fn` receives: a client-like object bound to one tenant and one transaction. */
export interface TenantTransaction {
  readonly tenantId: string;
  query<R extends QueryResultRow = any>(query: QueryInput, values?: readonly unknown[]): Promise<QueryResult<R>>;
  /**
   * Runs `fn` inside a SAVEPOINT: a throw rolls back to it (and rethrows), leaving the rest of the
   * transaction usable. The way to get a partial rollback, since the SQL guard refuses SAVEPOINT and
   * ROLLBACK TO sent as statements.
   */
  savepoint<T>(fn: (tx: TenantTransaction) => Promise<T> | T): Promise<T>;
}

class ActiveTransaction implements TenantTransaction {
  closed = false;
  started = false;
  statements = 0;
  /** The first batch (BEGIN + tenant) has been answered, so the client's status is ours to read. */
  private confirmed = false;
  private savepoints = 0;
  private chain: Promise<unknown> = Promise.resolve();
  /** The prelude's write gate (src/write-gate.ts): closed when a move holds the tenant's key. */
  private readonly gate = new WriteGateAnswer();

  constructor(
    readonly pool: TenantPool,
    readonly tenantId: string,
    private readonly client: TenantClient,
    private readonly prelude: readonly PreludeStatement[],
    private readonly batch: BatchOptions,
    private readonly guard: StatementGuard | undefined,
  ) {}

  query<R extends QueryResultRow = any>(query: QueryInput, values?: readonly unknown[]): Promise<QueryResult<R>> {
    if (this.closed) return Promise.reject(new TransactionClosedError());
    if (this.ended()) return Promise.reject(new TransactionEndedError());
    const statement = toStatement(query, values);
    try {
      this.guard?.check(statement.text, statement.values ?? [], this.tenantId);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.sendStatement<R>(statement);
  }

  async savepoint<T>(fn: (tx: TenantTransaction) => Promise<T> | T, handle: TenantTransaction = this): Promise<T> {
    if (this.closed) throw new TransactionClosedError();
    const name = `lbmt_savepoint_${++this.savepoints}`;
    await this.sendStatement({ text: `SAVEPOINT ${name}` });
    try {
      const value = await fn(handle);
      await this.sendStatement({ text: `RELEASE SAVEPOINT ${name}` });
      return value;
    } catch (error) {
      await this.sendStatement({ text: `ROLLBACK TO SAVEPOINT ${name}` });
      await this.sendStatement({ text: `RELEASE SAVEPOINT ${name}` });
      throw error;
    } finally {
      this.savepoints -= 1;
    }
  }

  /** Sends a statement of this transaction (the library's own ones skip the guard). */
  private sendStatement<R extends QueryResultRow>(statement: StatementConfig): Promise<QueryResult<R>> {
    if (this.closed) return Promise.reject(new TransactionClosedError());
    if (this.ended()) return Promise.reject(new TransactionEndedError());
    this.statements += 1;
    // The first statement carries BEGIN and the tenant setting in its round trip.
    const first = !this.started;
    const prelude = first ? this.prelude : [];
    this.started = true;
    const batch = first ? { ...this.batch, onPreludeRow: this.gate.onPreludeRow } : this.batch;
    const result = send(this.client, prelude, statement, batch);
    this.chain = result.catch(() => undefined);
    // Our BEGIN has been answered once the first batch got past its prelude (it succeeded, or only
    // the caller's statement failed); from then on an idle status means fn ended the transaction.
    if (first) {
      void result.then(
        () => (this.confirmed = true),
        (error: { batchStep?: string }) => settled(this.client).then(() => (this.confirmed = error?.batchStep !== 'prelude')),
      );
    }
    return result.catch((error) => {
      // Refused because the gate made this transaction read-only: a move, reported as such to the
      // caller's own code too (query builders pass the error on as it is).
      throw mapDatabaseError(this.gate.refine(error));
    }) as Promise<QueryResult<R>>;
  }

  /** True when our transaction was ended by a statement of fn (status idle after BEGIN was answered). */
  ended(): boolean {
    return this.confirmed && this.client.getTransactionStatus?.() === 'I';
  }

  /** Waits for every statement sent so far to be answered. */
  async drain(): Promise<void> {
    await this.chain;
    await settled(this.client);
  }
}

const activeTransactions = new AsyncLocalStorage<ActiveTransaction>();

/**
 * Runs `fn` in a transaction in which PostgreSQL sees `tenantId` as the current tenant
 * (`set_config(setting, id, true)`, i.e. SET LOCAL), then commits; a throw rolls back and rethrows.
 *
 * - The id is canonicalised before the pool is touched; `undefined` takes TenantContext's tenant.
 * - BEGIN and the tenant setting ride in the round trip of the first statement: k statements cost
 *   k + 1 round trips (the last is COMMIT); a callback that sends nothing costs none.
 * - A client whose session is not clean afterwards (failed ROLLBACK, killed backend, open
 *   transaction) is destroyed, never returned to the pool.
 * - The handle throws after `fn` settles. A nested call for the same tenant and pool joins this
 *   transaction; a nested call for another tenant throws TenantMismatchError.
 *
 * @example
 * const orders = await withTenantTransaction(pool, tenantId, async (tx) => {
 *   await tx.query('INSERT INTO orders (tenant_id, item) VALUES ($1, $2)', [tx.tenantId, 'book']);
 *   return (await tx.query('SELECT * FROM orders')).rows; // only this tenant's rows, by RLS
 * });
 */
export async function withTenantTransaction<T>(
  pool: TenantPool,
  tenantId: string | number | bigint | undefined,
  fn: (tx: TenantTransaction) => Promise<T> | T,
  options: TenantTransactionOptions = {},
): Promise<T> {
  const { id, tenancy } = resolveTenant(tenantId, options.tenancy);
  // Built (and so validated) before joining: a bad option is an error even when nested.
  const prepare = prepareMode(options.prepare);
  const begin = beginStatement(options);
  checkStatementTimeout(options.statementTimeoutMs); // an error even when nested
  checkLimits(options.limits);
  const joined = joinable(pool, id, options);
  if (joined) return fn(options.guard ? guardedHandle(joined, options.guard) : joined);

  const started = performance.now();
  const batch = await batchOptions(pool, id, prepare);
  const prelude = [begin, tenantStatement(tenancy, id, limitsOf(options), false, forceCustomPlans(batch))];
  return withLease(pool, id, false, started, async (lease) => {
    const tx = new ActiveTransaction(pool, id, lease.client, prelude, batch, options.guard);
    try {
      let value: T;
      try {
        value = await activeTransactions.run(tx, () => fn(tx));
      } finally {
        tx.closed = true;
        lease.statements = tx.statements;
      }
      await tx.drain();
      if (!tx.started) {
        lease.outcome = 'empty';
        return value;
      }
      if (tx.ended()) {
        lease.destroy = { reason: 'not-idle' };
        throw new TransactionEndedError();
      }
      const commit = await lease.client.query('COMMIT');
      if (commit?.command === 'ROLLBACK') throw new TransactionAbortedError();
      lease.outcome = 'commit';
      return value;
    } catch (error) {
      lease.destroy ??= await rollback(lease, tx);
      throw mapDatabaseError(error);
    }
  });
}

/**
 * Runs one statement for `tenantId` in one round trip: the tenant setting and the statement are
 * sent in one batch that PostgreSQL runs as one implicit transaction, so the setting lasts for that
 * statement only. Isolated exactly like `withTenantTransaction`. Inside a tenant transaction on the
 * same pool, it runs in that transaction.
 *
 * @example
 * const { rows } = await tenantQuery(pool, tenantId, 'SELECT * FROM orders WHERE id = $1', [id]);
 */
export async function tenantQuery<R extends QueryResultRow = any>(
  pool: TenantPool,
  tenantId: string | number | bigint | undefined,
  query: QueryInput,
  values?: readonly unknown[],
  options: TenantQueryOptions = {},
): Promise<QueryResult<R>> {
  const { id, tenancy } = resolveTenant(tenantId, options.tenancy);
  const prepare = prepareMode(options.prepare);
  checkStatementTimeout(options.statementTimeoutMs); // an error even when nested
  checkLimits(options.limits);
  const joined = joinable(pool, id, options);
  if (joined) return (options.guard ? guardedHandle(joined, options.guard) : joined).query<R>(query, values);
  const statement = toStatement(query, values);
  options.guard?.check(statement.text, statement.values ?? [], id);
  // Citus: BEGIN, set_tenant, the statement and COMMIT in one round trip (src/citus/batch.ts).
  if (tenancy.engine === 'citus') return runCitusTenantQuery<R>(pool, tenancy, id, statement, options);

  const started = performance.now();
  const known = batchOptions(pool, id, prepare);
  // Not awaited when known (the common case): an await costs a turn of the microtask queue.
  const batch = 'then' in known ? await known : known;
  const prelude = [tenantStatement(tenancy, id, limitsOf(options), options.readOnly ?? false, forceCustomPlans(batch))];
  const gate = new WriteGateAnswer();
  return withLease(pool, id, true, started, async (lease) => {
    try {
      const result = await send(lease.client, prelude, statement, { ...batch, onPreludeRow: gate.onPreludeRow }, true);
      lease.outcome = 'commit';
      return result as QueryResult<R>;
    } catch (error) {
      // The implicit transaction ended at Sync; the status check on release covers the rest.
      await settled(lease.client);
      throw mapDatabaseError(gate.refine(error));
    }
  });
}

/**
 * The canonical tenant id and the tenancy to use for it. An id passed in is read with `tenancy`
 * (default `defineTenancy()`'s). `undefined` takes TenantContext's tenant, which the context holds
 * already canonical together with the tenancy it was resolved under (the Koa middleware stores its
 * core's): without a `tenancy` of its own the call uses that one, so text and bigint tenancies work
 * through the context with no per-call options. Never undefined.
 */
export function resolveTenant(
  tenantId: string | number | bigint | undefined,
  tenancy: TenancyConfig | undefined,
): { readonly id: string; readonly tenancy: TenancyConfig } {
  if (tenantId !== undefined && tenantId !== null) {
    const config = tenancy ?? DEFAULT_TENANCY;
    return { id: canonicalTenantId(tenantId, config.tenantIdType), tenancy: config };
  }
  const scope = TenantContext.getScope();
  if (!scope) throw new TenantRequiredError('no tenant id was passed and there is no tenant in TenantContext');
  const config = tenancy ?? scope.tenancy ?? DEFAULT_TENANCY;
  // Already canonical for its own tenancy; read again only under another id type.
  const id = scope.tenancy?.tenantIdType === config.tenantIdType ? scope.tenantId : canonicalTenantId(scope.tenantId, config.tenantIdType);
  return { id, tenancy: config };
}

/** The canonical tenant id: the given one, else TenantContext's (see resolveTenant); never undefined. */
export function resolveTenantId(tenantId: string | number | bigint | undefined, tenancy: TenancyConfig | undefined): string {
  return resolveTenant(tenantId, tenancy).id;
}

/** The open transaction as seen by a nested call with a guard of its own: both guards apply. */
function guardedHandle(tx: ActiveTransaction, guard: StatementGuard): TenantTransaction {
  const handle: TenantTransaction = {
    tenantId: tx.tenantId,
    query(query, values) {
      try {
        const statement = toStatement(query, values);
        guard.check(statement.text, statement.values ?? [], tx.tenantId);
      } catch (error) {
        return Promise.reject(error);
      }
      return tx.query(query, values);
    },
    savepoint: (fn) => tx.savepoint(fn, handle),
  };
  return handle;
}

/**
 * The transaction of the current async scope to join, if it is for this pool. Throws for another
 * tenant (on any pool: cross-tenant work must not nest), and for options that would have to
 * change the open transaction, which a nested call cannot do.
 */
/**
 * The pool of the tenant transaction open in this async scope, when it is `tenantId`'s: what a
 * router over several pools (TenantDBPool) must use, so that a nested call joins it.
 */
export function openTransactionPool(tenantId: string): TenantPool | undefined {
  const active = activeTransactions.getStore();
  return active && !active.closed && active.tenantId === tenantId ? active.pool : undefined;
}

/** Whether a tenant transaction is open in this async scope (a pipelined tenantQuery then joins it). */
export function inTenantTransaction(): boolean {
  const active = activeTransactions.getStore();
  return !!active && !active.closed;
}

function joinable(pool: TenantPool, tenantId: string, options: TenantTransactionOptions): ActiveTransaction | undefined {
  const active = activeTransactions.getStore();
  if (!active || active.closed) return undefined;
  if (active.tenantId !== tenantId) {
    throw new TenantMismatchError('a tenant transaction for another tenant is already open in this scope; cross-tenant work must not nest');
  }
  if (active.pool !== pool) return undefined;
  const changing = (['isolationLevel', 'readOnly', 'statementTimeoutMs', 'limits'] as const).filter((key) => options[key] !== undefined);
  if (changing.length > 0) {
    throw new TypeError(`a nested tenant call joins the open transaction and cannot set ${changing.join(', ')}; pass them to the outer withTenantTransaction`);
  }
  return active;
}

async function rollback(lease: Lease, tx: ActiveTransaction): Promise<ReleaseFailure | undefined> {
  if (lease.connectionError) return { reason: 'connection-error', error: lease.connectionError };
  if (!tx.started) return undefined;
  try {
    await tx.drain();
    // fn ended our transaction itself: whatever it ran after that left session state we cannot see.
    if (tx.ended()) return { reason: 'not-idle' };
    const status = lease.client.getTransactionStatus?.();
    if (status === 'I') return undefined;
    await lease.client.query('ROLLBACK');
    return undefined;
  } catch (error) {
    return { reason: 'rollback-failed', error };
  }
}
