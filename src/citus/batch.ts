/**
 * The tenant transaction on Citus (docs/citus.md). Contract, for whoever wires a tenant handle on top:
 *
 * - The tenant is set with `SELECT linkbay.set_tenant($1)` (SET LOCAL through a bind parameter)
 *   inside an explicit `BEGIN`: the only way Citus 13 propagates it to the workers' shards, whose
 *   policies are the ones enforced. `set_config(..., true)` and an implicit transaction do not reach
 *   the workers (a cross-tenant INSERT was committed that way); both are never used in this mode.
 * - `citusTenantQuery`: BEGIN, set_tenant, the statement and COMMIT in ONE extended-protocol batch
 *   with one Sync: one round trip between the application and the coordinator. When the statement
 *   (or COMMIT) fails, a ROLLBACK follows in a second round trip (always: the client's status is
 *   stale when the connection died mid-batch); a client it fails on is destroyed, never pooled.
 * - `withCitusTenantTransaction`: BEGIN and set_tenant ride with the first statement (the vanilla
 *   ActiveTransaction, with set_tenant as its tenant statement): k statements cost k + 1 round trips.
 * - Fails closed: when set_tenant is missing or refuses (no role setting, not a Citus coordinator),
 *   the statement is not run and CitusTenantNotSetError (LBMT_CITUS_TENANT_NOT_SET) is thrown.
 * - Both take the same options as tenantQuery / withTenantTransaction; the tenancy must have
 *   `engine: 'citus'`. `prepare` does not apply to citusTenantQuery (statements are sent unnamed).
 * - tenantQuery / withTenantTransaction called with a Citus tenancy take these paths themselves:
 *   the engine is the tenancy's, never guessed per call.
 */
import pg from 'pg';
import type { QueryResult, QueryResultRow } from 'pg';
import { DEFAULT_TENANCY, type TenancyConfig } from '../config.js';
import { TenancyConfigError, mapDatabaseError } from '../errors.js';
import { settled, type ReleaseFailure } from '../client-hygiene.js';
import { withLease } from '../lease.js';
import type { TenantClient, TenantPool } from '../pool.js';
import type { PreludeStatement, StatementConfig, WireConnection } from '../pipeline.js';
import { checkStatementTimeout } from '../prelude.js';
import { SET_TENANT_FUNCTION } from './schema.js';

/** `SELECT linkbay.set_tenant($1)`, which bakes in the setting name (+ local statement timeout / plan cache mode, coordinator-side). */
export function citusTenantStatement(tenantId: string, statementTimeoutMs: number | undefined, customPlans: boolean): PreludeStatement {
  let text = `SELECT ${SET_TENANT_FUNCTION}($1)`;
  const values = [tenantId];
  if (statementTimeoutMs !== undefined) {
    checkStatementTimeout(statementTimeoutMs);
    // statement_timeout is a session setting of each node's backend; set on the coordinator it
    // cancels the distributed statement as a whole.
    text += `, set_config('statement_timeout', $2, true)`;
    values.push(`${statementTimeoutMs}ms`);
  }
  if (customPlans) text += `, set_config('plan_cache_mode', 'force_custom_plan', true)`;
  return { text, values };
}

/** Throws unless the tenancy is in Citus mode. */
export function requireCitus(tenancy: TenancyConfig | undefined): TenancyConfig {
  const config = tenancy ?? DEFAULT_TENANCY;
  if (config.engine !== 'citus') throw new TenancyConfigError('this function needs a tenancy with `engine: "citus"`');
  return config;
}

type Callback = (error: Error | null, result?: pg.QueryResult) => void;

interface PgQuery {
  handleRowDescription(msg: unknown): void;
  handleDataRow(msg: unknown): void;
  handleCommandComplete(msg: unknown, con: unknown): void;
  handleEmptyQuery(con: unknown): void;
  handleReadyForQuery(con: unknown): void;
  handleError(err: Error, con: unknown): void;
  callback: Callback;
}

/**
 * One batch: `before` statements, the caller's statement (its result parsed by a real pg.Query),
 * `after` statements, one Sync. Errors carry `batchStep`: 'prelude', 'statement' or 'postlude'.
 */
class CitusBatch {
  callback: Callback;
  private step = 0;
  private finished = false;
  private readonly final: PgQuery;

  constructor(
    private readonly before: readonly PreludeStatement[],
    private readonly statement: StatementConfig,
    private readonly after: readonly PreludeStatement[],
    callback: Callback,
  ) {
    this.callback = (error, result) => {
      if (this.finished) return;
      this.finished = true;
      callback(error, result);
    };
    const Query = (pg as unknown as { Query: new (config: object) => PgQuery }).Query;
    this.final = new Query({ text: statement.text, values: statement.values, rowMode: statement.rowMode, types: statement.types });
    // pg.Query calls back on an error, or at ReadyForQuery: after COMMIT has been answered too.
    this.final.callback = this.callback;
  }

  submit(connection: WireConnection): Error | null {
    if (this.statement.values !== undefined && !Array.isArray(this.statement.values)) return new Error('Query values must be an array');
    const simple = (s: PreludeStatement) => {
      connection.parse({ text: s.text, name: '', types: [] });
      connection.bind({ portal: '', statement: '', values: s.values });
      connection.execute({ portal: '', rows: 0 });
    };
    connection.stream.cork?.();
    try {
      this.before.forEach(simple);
      connection.parse({ text: this.statement.text, name: '', types: [] });
      try {
        const prepareValue = (pg as unknown as { utils: { prepareValue: (v: unknown) => unknown } }).utils.prepareValue;
        connection.bind({ portal: '', statement: '', values: this.statement.values ?? [], valueMapper: prepareValue });
      } catch (error) {
        // A value that cannot be serialised: nothing of the statement runs; the open transaction is
        // rolled back by the caller (its status is 'T' after Sync).
        connection.sync();
        this.callback(error as Error);
        return null;
      }
      connection.describe({ type: 'P', name: '' });
      connection.execute({ portal: '', rows: 0 });
      this.after.forEach(simple);
      connection.sync();
    } finally {
      connection.stream.uncork?.();
    }
    return null;
  }

  private get phase(): 'prelude' | 'statement' | 'postlude' {
    if (this.step < this.before.length) return 'prelude';
    return this.step === this.before.length ? 'statement' : 'postlude';
  }

  handleRowDescription(msg: unknown): void {
    if (this.phase === 'statement') this.final.handleRowDescription(msg);
  }

  handleDataRow(msg: unknown): void {
    if (this.phase === 'statement') this.final.handleDataRow(msg);
  }

  handleCommandComplete(msg: unknown, connection: unknown): void {
    if (this.phase === 'statement') this.final.handleCommandComplete(msg, connection);
    this.step += 1;
  }

  handleEmptyQuery(connection: unknown): void {
    if (this.phase === 'statement') this.final.handleEmptyQuery(connection);
    this.step += 1;
  }

  handlePortalSuspended(): void {}
  handleCopyInResponse(): void {}
  handleCopyData(): void {}

  handleReadyForQuery(connection: unknown): void {
    this.final.handleReadyForQuery(connection);
  }

  handleError(error: Error, connection: unknown): void {
    if (error && typeof error === 'object') (error as Error & { batchStep?: string }).batchStep = this.phase;
    this.final.handleError(error, connection);
  }

  static run(client: { query(submittable: CitusBatch): unknown }, before: readonly PreludeStatement[], statement: StatementConfig, after: readonly PreludeStatement[]): Promise<pg.QueryResult> {
    return new Promise((resolve, reject) => {
      client.query(new CitusBatch(before, statement, after, (error, result) => (error ? reject(error) : resolve(result!))));
    });
  }
}

/**
 * The body of tenantQuery on Citus, with the tenant id already canonical and the statement guarded:
 * one round trip (BEGIN, set_tenant, statement, COMMIT, Sync). For clients the batch cannot be
 * written to (pg in pipeline mode, other pools), the same statements are queued without awaiting.
 */
export async function runCitusTenantQuery<R extends QueryResultRow>(
  pool: TenantPool,
  tenancy: TenancyConfig,
  tenantId: string,
  statement: StatementConfig,
  options: { statementTimeoutMs?: number; readOnly?: boolean },
): Promise<QueryResult<R>> {
  const begin: PreludeStatement = { text: options.readOnly ? 'BEGIN READ ONLY' : 'BEGIN', values: [] };
  const before = [begin, citusTenantStatement(tenantId, options.statementTimeoutMs, false)];
  const after: PreludeStatement[] = [{ text: 'COMMIT', values: [] }];
  const started = performance.now();
  return withLease(pool, tenantId, true, started, async (lease) => {
    try {
      const result = await send(lease.client, before, statement, after);
      lease.outcome = 'commit';
      return result as QueryResult<R>;
    } catch (error) {
      lease.destroy = await rollback(lease.client, lease.connectionError);
      throw mapDatabaseError(error);
    }
  });
}

function send(client: TenantClient, before: readonly PreludeStatement[], statement: StatementConfig, after: readonly PreludeStatement[]): Promise<QueryResult> {
  const internal = client as unknown as { connection?: { stream?: unknown }; pipeline?: boolean };
  if (internal.connection?.stream && !internal.pipeline) return CitusBatch.run(client, before, statement, after);
  return sendQueued(client, before, statement, after);
}

async function sendQueued(client: TenantClient, before: readonly PreludeStatement[], statement: StatementConfig, after: readonly PreludeStatement[]): Promise<QueryResult> {
  const queue: Array<Promise<unknown>> = [];
  for (const s of before) queue.push(client.query(s.text, [...s.values]));
  const result = client.query({ text: statement.text, values: statement.values, rowMode: statement.rowMode, types: statement.types });
  queue.push(result);
  for (const s of after) queue.push(client.query(s.text, [...s.values]));
  const outcomes = await Promise.allSettled(queue);
  const failed = outcomes.findIndex((s) => s.status === 'rejected');
  if (failed >= 0) {
    const reason = (outcomes[failed] as PromiseRejectedResult).reason;
    if (reason && typeof reason === 'object') (reason as { batchStep?: string }).batchStep = failed < before.length ? 'prelude' : failed === before.length ? 'statement' : 'postlude';
    throw reason;
  }
  return (await result) as QueryResult;
}

/**
 * After a failed batch: ROLLBACK, whatever the status says. The status is the one of the last
 * ReadyForQuery, stale when the connection died mid-batch; a ROLLBACK outside a transaction is only
 * a warning, and one that fails (dead connection) destroys the client.
 */
async function rollback(client: TenantClient, connectionError: Error | undefined): Promise<ReleaseFailure | undefined> {
  if (connectionError) return { reason: 'connection-error', error: connectionError };
  await settled(client);
  try {
    await client.query('ROLLBACK');
    return undefined;
  } catch (error) {
    return { reason: 'rollback-failed', error };
  }
}
