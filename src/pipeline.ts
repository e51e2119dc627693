import pg from 'pg';
import { namesTenant, preparedStatementName } from './statement-names.js';

export { preparedStatementName } from './statement-names.js';

/**
 * One extended-protocol batch: Parse/Bind/Execute for each prelude statement (BEGIN, set_config),
 * then Parse/Bind/Describe/Execute for the caller's statement, then a single Sync. The server
 * answers all of it in one round trip. Results of the prelude are discarded; the statement's result
 * is parsed by a real `pg.Query`, so type parsers, `rowMode` and `fields` behave as in `pool.query`.
 *
 * This is node-postgres's documented extension point (a "Submittable", as pg-cursor uses), not a
 * patch of its internals: `client.query(batch)` makes it the active query and feeds it the
 * backend's messages.
 *
 * Without BEGIN in the prelude the batch runs as one implicit transaction (it ends at Sync), so a
 * `set_config(..., true)` in it lasts exactly for the statement after it.
 */

/** A statement of the prelude. Its text is constant; only `values` vary. */
export interface PreludeStatement {
  readonly text: string;
  readonly values: readonly string[];
}

export interface StatementConfig {
  readonly text: string;
  readonly values?: readonly unknown[];
  readonly rowMode?: 'array';
  readonly types?: unknown;
}

/**
 * Which statements are sent as named prepared statements (parsed once per connection):
 * - `tenant`: the library's own constant statements (BEGIN, set_config), and the caller's
 *   statements named per plan class (src/plan-classes.ts): tenants that the planner estimates
 *   alike share cached plans, others do not; a statement with the tenant id among its values is
 *   sent unnamed (planned at each execution). When the classes cannot be
 *   known, only statements with parameters are named, with `plan_cache_mode = force_custom_plan`
 *   for the transaction: planned at each execution with this tenant's setting and values
 *   (statements without parameters stay unnamed: PostgreSQL gives a named one a generic plan
 *   whatever plan_cache_mode says).
 * - `all`: the caller's statements too. Faster again, but a named statement gets a cached generic
 *   plan (at once when it has no parameters, after 5 runs otherwise), made for whichever tenant
 *   came first: on skewed data a big tenant can inherit a small tenant's plan (bench/RESULTS.md).
 * - `none`: nothing named. For PgBouncer before 1.21 in transaction mode, which cannot route
 *   named statements.
 */
export type PrepareMode = 'tenant' | 'all' | 'none';

export interface BatchOptions {
  readonly prepare: PrepareMode;
  /**
   * With 'tenant': the tenant's plan class (src/plan-classes.ts). Every statement of the caller is
   * then named per class; undefined when classes are unknown (named only with parameters, planned
   * at each execution).
   */
  readonly planClass?: string | undefined;
  /** The transaction's tenant (canonical): a statement with it among its values is not named per class. */
  readonly tenantId?: string;
  /**
   * Written ahead of the batches before it on the same connection (src/pipeline-connection.ts).
   * A COPY FROM STDIN then destroys the connection: the server would swallow the next batches.
   */
  readonly pipelined?: boolean;
  /**
   * Called with the fields (text) of the last prelude statement's row: the tenant statement, whose
   * second field is the write gate's (src/write-gate.ts: NULL, or 'on' when a move holds the tenant).
   */
  readonly onPreludeRow?: (fields: ReadonlyArray<string | null>) => void;
}

/** The connection interface of node-postgres we write to (pg/lib/connection.js). */
export interface WireConnection {
  stream: { cork?: () => void; uncork?: () => void; destroy?: (error?: Error) => void };
  parse(msg: { text: string; name: string; types: unknown[] }): void;
  bind(msg: { portal: string; statement: string; values: readonly unknown[]; valueMapper?: (v: unknown) => unknown }): void;
  describe(msg: { type: 'P' | 'S'; name: string }): void;
  execute(msg: { portal: string; rows: number }): void;
  close(msg: { type: 'P' | 'S'; name: string }): void;
  sync(): void;
}

/** Most named statements kept per connection; the least recently used is closed beyond it. */
export const MAX_PREPARED_PER_CONNECTION = 200;

// Statements we have prepared on each server connection, most recently used last.
const preparedByConnection = new WeakMap<object, Map<string, true>>();

const prepareValue = (pg as unknown as { utils: { prepareValue: (v: unknown) => unknown } }).utils.prepareValue;

type Callback = (error: Error | null, result?: pg.QueryResult) => void;

interface PgQuery {
  handleRowDescription(msg: unknown): void;
  handleDataRow(msg: unknown): void;
  handleCommandComplete(msg: unknown, con: unknown): void;
  handleEmptyQuery(con: unknown): void;
  handleReadyForQuery(con: unknown): void;
  handleError(err: Error, con: unknown): void;
  handleCopyInResponse(con: unknown): void;
  handleCopyData(msg: unknown, con: unknown): void;
  handlePortalSuspended(con: unknown): void;
  callback: Callback;
}

export class PipelinedBatch {
  /** Set by pg when the batch is passed to `client.query()` with a callback; we set it ourselves. */
  callback: Callback;
  /** Index of the statement the server is working on: prelude first, then the statement. */
  private step = 0;
  private finished = false;
  /** The messages are on the wire (by `submit`, or ahead of time by `write`). */
  written = false;
  /** Named statements this batch sends the Parse of, unconfirmed until its ReadyForQuery. */
  private parsing: string[] = [];
  private wire: WireConnection | undefined;
  /** Statement names sent, in batch order ('' for unnamed): what to forget after an error. */
  private readonly names: string[] = [];
  private readonly final: PgQuery;

  constructor(
    private readonly prelude: readonly PreludeStatement[],
    private readonly statement: StatementConfig,
    private readonly options: BatchOptions,
    callback: Callback,
  ) {
    this.callback = (error, result) => {
      if (this.finished) return;
      this.finished = true;
      callback(error, result);
    };
    const Query = (pg as unknown as { Query: new (config: object) => PgQuery }).Query;
    this.final = new Query({ text: statement.text, values: statement.values, rowMode: statement.rowMode, types: statement.types });
    this.final.callback = this.callback;
  }

  /** Promise form: resolves with the statement's result. */
  static run(
    client: { query(submittable: PipelinedBatch): unknown },
    prelude: readonly PreludeStatement[],
    statement: StatementConfig,
    options: BatchOptions,
  ): Promise<pg.QueryResult> {
    return new Promise((resolve, reject) => {
      client.query(new PipelinedBatch(prelude, statement, options, (error, result) => (error ? reject(error) : resolve(result!))));
    });
  }

  /** Index in the batch of the statement that failed, and how many prelude statements there were. */
  get failedStep(): { step: number; preludeLength: number } {
    return { step: this.step, preludeLength: this.prelude.length };
  }

  /** Called by pg when the batch becomes the active query: writes it unless it was written ahead. */
  submit(connection: WireConnection): Error | null {
    return this.written ? null : this.write(connection);
  }

  /**
   * Writes the batch now. pg calls it through `submit`; a pipeline calls it ahead of time, for a
   * batch queued behind others on the same client, which pg then makes active in order.
   */
  write(connection: WireConnection): Error | null {
    if (this.statement.values !== undefined && !Array.isArray(this.statement.values)) {
      return new Error('Query values must be an array');
    }
    this.written = true;
    this.wire = connection;
    connection.stream.cork?.();
    try {
      for (const statement of this.prelude) {
        const name = this.statementName(connection, statement.text, this.options.prepare !== 'none');
        connection.bind({ portal: '', statement: name, values: statement.values });
        connection.execute({ portal: '', rows: 0 });
      }
      // 'tenant' without plan classes names statements with parameters only: the prelude forces
      // custom plans for them, while a statement without parameters would get a generic plan
      // whatever plan_cache_mode says.
      // With classes, a statement that names the tenant in a parameter (`WHERE tenant_id = $1`, on a
      // table outside RLS say) is sent unnamed, planned at each execution: a cached generic plan
      // estimates a parameter for an average value, whatever the class.
      const { prepare: mode, planClass } = this.options;
      const values = this.statement.values ?? [];
      const classed = mode === 'tenant' && planClass !== undefined && !namesTenant(values, this.options.tenantId);
      const named = mode === 'all' || classed || (mode === 'tenant' && planClass === undefined && values.length > 0);
      const name = this.statementName(connection, this.statement.text, named, classed ? planClass : undefined);
      try {
        connection.bind({ portal: '', statement: name, values: this.statement.values ?? [], valueMapper: prepareValue });
      } catch (error) {
        // A value that cannot be serialised: end the batch cleanly; the prelude ran in vain, and
        // the implicit transaction (or the aborted explicit one) is handled by the caller.
        connection.sync();
        this.final.handleError(error as Error, connection);
        return null;
      }
      connection.describe({ type: 'P', name: '' });
      connection.execute({ portal: '', rows: 0 });
      connection.sync();
    } finally {
      connection.stream.uncork?.();
    }
    return null;
  }

  /** Sends Parse unless `text` is already prepared on this connection; returns the statement name. */
  private statementName(connection: WireConnection, text: string, named: boolean, planClass?: string): string {
    if (!named) {
      connection.parse({ text, name: '', types: [] });
      this.names.push('');
      return '';
    }
    const name = preparedStatementName(text, planClass);
    let parsing = parsingByConnection.get(connection);
    if (!parsing) parsingByConnection.set(connection, (parsing = new Set()));
    if (parsing.has(name)) {
      // An earlier batch still in flight on this connection sends its Parse: if that batch fails
      // before it, the name will not exist. Parse unnamed for this once (pipelined batches only).
      connection.parse({ text, name: '', types: [] });
      this.names.push('');
      return '';
    }
    this.names.push(name);
    let prepared = preparedByConnection.get(connection);
    if (!prepared) preparedByConnection.set(connection, (prepared = new Map()));
    if (prepared.has(name)) {
      prepared.delete(name); // re-insert: most recently used last
      prepared.set(name, true);
      return name;
    }
    if (prepared.size >= MAX_PREPARED_PER_CONNECTION) {
      const oldest = prepared.keys().next().value as string;
      prepared.delete(oldest);
      connection.close({ type: 'S', name: oldest });
    }
    // Close first: if an earlier batch failed after sending this Parse, the server may or may not
    // hold the statement. Closing a statement that does not exist is not an error.
    if (forgotten.has(connection) && forgotten.get(connection)!.delete(name)) connection.close({ type: 'S', name });
    connection.parse({ text, name, types: [] });
    prepared.set(name, true);
    parsing.add(name);
    this.parsing.push(name);
    return name;
  }

  /** The batch is answered (or its connection is gone): its Parses are no longer in flight. */
  private confirmParses(): void {
    if (this.parsing.length === 0 || !this.wire) return;
    const parsing = parsingByConnection.get(this.wire);
    for (const name of this.parsing) parsing?.delete(name);
    this.parsing = [];
  }

  /** After an error, statements from the failed step on may not have been parsed: forget them. */
  private forgetUnconfirmed(connection: WireConnection): void {
    const prepared = preparedByConnection.get(connection);
    if (!prepared) return;
    let uncertain = forgotten.get(connection);
    if (!uncertain) forgotten.set(connection, (uncertain = new Set()));
    for (const name of this.names.slice(this.step)) {
      if (name !== '' && prepared.delete(name)) uncertain.add(name);
    }
  }

  handleRowDescription(msg: unknown): void {
    if (this.step === this.prelude.length) this.final.handleRowDescription(msg);
  }

  handleDataRow(msg: unknown): void {
    if (this.step === this.prelude.length) this.final.handleDataRow(msg);
    else if (this.step === this.prelude.length - 1) this.options.onPreludeRow?.((msg as { fields: Array<string | null> }).fields);
  }

  handleCommandComplete(msg: unknown, connection: unknown): void {
    if (this.step < this.prelude.length) {
      this.step += 1;
      return;
    }
    this.final.handleCommandComplete(msg, connection);
  }

  handleEmptyQuery(connection: unknown): void {
    this.final.handleEmptyQuery(connection);
  }

  handlePortalSuspended(connection: unknown): void {
    this.final.handlePortalSuspended(connection);
  }

  handleCopyInResponse(connection: unknown): void {
    if (this.options.pipelined) {
      // The server now waits for COPY data and ignores Syncs: the batches written behind this one
      // would be consumed by it. Nothing can be saved on this connection.
      // FATAL for the connection: the pipeline breaks it at once, before reading further replies.
      const error = Object.assign(new Error('COPY FROM STDIN cannot run in a pipelined tenantQuery'), { severity: 'FATAL' });
      this.final.handleError(error, connection);
      (connection as WireConnection).stream.destroy?.(error);
      return;
    }
    this.final.handleCopyInResponse(connection);
  }

  handleCopyData(msg: unknown, connection: unknown): void {
    this.final.handleCopyData(msg, connection);
  }

  handleReadyForQuery(connection: unknown): void {
    this.confirmParses();
    this.final.handleReadyForQuery(connection);
  }

  handleError(error: Error, connection: unknown): void {
    if (connection && typeof connection === 'object' && 'parse' in connection) this.forgetUnconfirmed(connection as WireConnection);
    // The server skips the rest of the batch: what was parsed is known now (pg passes the
    // ReadyForQuery after an error to no query).
    this.confirmParses();
    if (this.step < this.prelude.length && error && typeof error === 'object') {
      (error as Error & { batchStep?: string }).batchStep = 'prelude';
    }
    this.final.handleError(error, connection);
  }
}

// Names whose Parse may or may not have reached the server before an error, per connection.
const forgotten = new WeakMap<object, Set<string>>();
// Names whose Parse is on the wire in a batch not answered yet, per connection.
const parsingByConnection = new WeakMap<object, Set<string>>();
