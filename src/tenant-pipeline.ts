import type { QueryResult, QueryResultRow } from 'pg';
import { connectClient } from './client-hygiene.js';
import { mapDatabaseError } from './errors.js';
import { transactionChannel, type TransactionEvent } from './events.js';
import { PipelineConnection } from './pipeline-connection.js';
import type { BatchOptions, PreludeStatement, StatementConfig } from './pipeline.js';
import type { TenantPool } from './pool.js';
import { batchOptions, checkStatementTimeout, forceCustomPlans, limitsOf, prepareMode, tenantStatement, toStatement, type QueryInput } from './prelude.js';
import { inTenantTransaction, resolveTenant, tenantQuery, type TenantQueryOptions } from './transaction.js';
import { WriteGateAnswer } from './write-gate.js';

/**
 * Pipelined tenant statements: `createTenantDb(pool, { pipeline: { connections, depth } })`.
 *
 * The handle's `tenantQuery` then shares a few of the pool's connections between all callers, with
 * up to `depth` batches in flight on each (src/pipeline-connection.ts) instead of one caller per
 * connection waiting for its reply. Each batch is its own implicit transaction closed by its own
 * Sync, which is what keeps `set_config(..., true)` to its one statement. What changes for the
 * caller, and what does not:
 *
 * - Same results, errors, guard, options, isolation as tenantQuery. A statement error fails only
 *   its own call; the batches behind it run normally, each with its own tenant.
 * - A connection that fails (killed backend, reset) fails every call in flight on it with
 *   PipelineBrokenError('connection-lost'): each may or may not have committed, as any statement
 *   whose connection dies before its reply. A call that succeeded has committed. The connection
 *   is destroyed, never reused.
 * - Transaction control through tenantQuery (BEGIN) fails with PipelineBrokenError
 *   ('transaction-left-open') and takes the calls behind it on that connection with it.
 * - COPY FROM STDIN cannot be pipelined: it destroys the connection (use withTenantTransaction).
 * - Inside withTenantTransaction a tenantQuery joins that transaction as always (not pipelined:
 *   an explicit transaction spans Syncs, so batches there cannot be independent).
 *   withTenantTransaction itself leases a connection of its own as before.
 * - A connection is held while it has batches in flight and goes back to the pool when it has
 *   none, so `pool.end()` works and other work gets connections between bursts.
 * - Through PgBouncer in transaction mode it works (each batch is a whole transaction); named
 *   statements need PgBouncer >= 1.21 with max_prepared_statements, else `prepare: 'none'`.
 */
export interface PipelineOptions {
  /** Most connections of the pool used for pipelined statements. Default 4. */
  readonly connections?: number;
  /** Most batches in flight on one connection. Default 8. */
  readonly depth?: number;
}

interface Waiting {
  readonly prelude: readonly PreludeStatement[];
  readonly statement: StatementConfig;
  readonly batch: BatchOptions;
  resolve(result: QueryResult): void;
  reject(error: unknown): void;
}

export class TenantPipeline {
  readonly connections: number;
  readonly depth: number;
  private readonly held = new Set<PipelineConnection>();
  private connecting = 0;
  private readonly waiting: Waiting[] = [];

  constructor(readonly pool: TenantPool, options: PipelineOptions = {}) {
    this.connections = positive(options.connections ?? 4, 'pipeline.connections');
    this.depth = positive(options.depth ?? 8, 'pipeline.depth');
  }

  /** Connections held now, batches in flight on them, and calls waiting for a slot. */
  stats(): { readonly connections: number; readonly inFlight: number; readonly waiting: number } {
    let inFlight = 0;
    for (const connection of this.held) inFlight += connection.depth;
    return { connections: this.held.size, inFlight, waiting: this.waiting.length };
  }

  /** Sends one batch on the least busy connection, opening one (up to `connections`) when all are busy. */
  send(prelude: readonly PreludeStatement[], statement: StatementConfig, batch: BatchOptions): Promise<QueryResult> {
    const connection = this.pick();
    if (connection) return connection.send(prelude, statement, batch);
    return new Promise((resolve, reject) => {
      this.waiting.push({ prelude, statement, batch, resolve, reject });
    });
  }

  private pick(): PipelineConnection | undefined {
    let best: PipelineConnection | undefined;
    for (const connection of this.held) if (!best || connection.depth < best.depth) best = connection;
    if (best?.depth === 0) return best;
    if (this.held.size + this.connecting < this.connections) void this.open();
    return best && best.depth < this.depth ? best : undefined;
  }

  private async open(): Promise<void> {
    let connection: PipelineConnection;
    this.connecting += 1;
    try {
      const client = await connectClient(this.pool);
      if (!PipelineConnection.fits(client)) {
        client.release();
        throw new TypeError('pipelined tenant statements need node-postgres clients (pg.Pool) without pg\'s own `pipeline` option');
      }
      connection = new PipelineConnection(client, (c) => this.gone(c), (c) => this.slot(c));
      this.held.add(connection);
    } catch (error) {
      // Nothing to wait for when no connection is left: fail the waiting calls.
      if (this.held.size === 0) for (const waiter of this.waiting.splice(0)) waiter.reject(error);
      return;
    } finally {
      this.connecting -= 1;
    }
    this.dispatch();
    this.releaseWhenIdle(connection);
  }

  private dispatch(): void {
    while (this.waiting.length > 0) {
      const connection = this.pick();
      if (!connection) return;
      const waiter = this.waiting.shift()!;
      connection.send(waiter.prelude, waiter.statement, waiter.batch).then(waiter.resolve, waiter.reject);
    }
  }

  private slot(connection: PipelineConnection): void {
    if (this.waiting.length > 0) this.dispatch();
    this.releaseWhenIdle(connection);
  }

  /** Back to the pool when idle, once the callers resumed by the last reply had their turn to send again. */
  private releaseWhenIdle(connection: PipelineConnection): void {
    if (connection.depth === 0) setImmediate(() => connection.depth === 0 && this.waiting.length === 0 && connection.release());
  }

  private gone(connection: PipelineConnection): void {
    this.held.delete(connection);
    if (this.waiting.length > 0) this.dispatch();
  }
}

function positive(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new TypeError(`\`${name}\` must be a positive integer`);
  return value;
}

/**
 * tenantQuery through a pipeline: the same resolution, guard, prelude and options as tenantQuery
 * (src/transaction.ts), the batch sent on a shared connection. Inside a tenant transaction it is
 * tenantQuery itself, which joins that transaction (or refuses another tenant's).
 */
export async function pipelinedTenantQuery<R extends QueryResultRow = any>(
  pipeline: TenantPipeline,
  tenantId: string | number | bigint | undefined,
  query: QueryInput,
  values: readonly unknown[] | undefined,
  options: TenantQueryOptions,
): Promise<QueryResult<R>> {
  if (inTenantTransaction()) return tenantQuery<R>(pipeline.pool, tenantId, query, values, options);
  const { id, tenancy } = resolveTenant(tenantId, options.tenancy);
  const prepare = prepareMode(options.prepare);
  checkStatementTimeout(options.statementTimeoutMs);
  const statement = toStatement(query, values);
  if (!Array.isArray(statement.values)) throw new TypeError('query values must be an array');
  options.guard?.check(statement.text, statement.values, id);

  const started = performance.now();
  const known = batchOptions(pipeline.pool, id, prepare);
  const batch = 'then' in known ? await known : known;
  const prelude = [tenantStatement(tenancy, id, limitsOf(options), options.readOnly ?? false, forceCustomPlans(batch))];
  let outcome: TransactionEvent['outcome'] = 'rollback';
  const gate = new WriteGateAnswer();
  try {
    const result = await pipeline.send(prelude, statement, { ...batch, onPreludeRow: gate.onPreludeRow });
    outcome = 'commit';
    return result as QueryResult<R>;
  } catch (error) {
    throw mapDatabaseError(gate.refine(error));
  } finally {
    if (transactionChannel.hasSubscribers) {
      transactionChannel.publish({ tenantId: id, outcome, statements: 1, durationMs: performance.now() - started, single: true } satisfies TransactionEvent);
    }
  }
}
