import { DEFAULT_TENANCY, qualifiedName, quoteIdent, type TenancyConfig } from './config.js';
import { TenantError, TenantInputError, TenantNotFoundError, type TenantErrorOptions } from './errors.js';
import type { Queryable } from './pool.js';
import { canonicalTenantId } from './tenant-id.js';
import { WRITE_FREEZE_SQL } from './write-gate.js';
import { inAdminTransaction } from './admin-transaction.js';
import { auditContext, writeAudit, type AuditContext } from './audit.js';
import { isTimeoutMs, MAX_TIMEOUT_MS } from './limits.js';
import { observeOperation, tenantIdOrNull } from './tenant-operations.js';

/** One table of a purge: what was deleted, and what a count afterwards found left. */
export interface PurgedTable {
  /** `schema.table`. */
  readonly table: string;
  readonly column: string;
  /** Whether the table is in the tenancy's `tables` (under RLS); others were found in the catalog. */
  readonly configured: boolean;
  readonly deleted: number;
  /** Rows of the tenant counted after the delete: 0, or the purge is not complete (then rolled back: the rows there now). Null when the count failed. */
  readonly remaining: number | null;
  /** Why the table could not be purged or counted (a privilege, a foreign key from another table). */
  readonly error?: string;
}

export interface PurgeReport {
  readonly tenantId: string;
  /** Children before parents: the order the rows were deleted in. */
  readonly tables: readonly PurgedTable[];
  /** True when every table was counted afterwards at zero rows of the tenant. */
  readonly complete: boolean;
}

/** A purge left rows behind or could not check a table; `report` says which. Re-run it after the fix. */
export class PurgeIncompleteError extends TenantError {
  constructor(readonly report: PurgeReport, options?: TenantErrorOptions) {
    const failing = report.tables.filter((t) => t.error).map((t) => t.table);
    const failed = failing.length > 0 ? failing : report.tables.filter((t) => t.remaining !== 0).map((t) => t.table);
    super('LBMT_PURGE_INCOMPLETE', `the purge is incomplete and was rolled back (nothing was deleted): ${failed.join(', ')} could not be purged or checked; fix the cause and run it again`, 500, true, options);
  }
}

export interface PurgeOptions {
  /** Default `defineTenancy()`. */
  readonly tenancy?: TenancyConfig;
  /** Who purges and why, for the `purge` audit row (written with the report, complete or not). Default actor `system`. */
  readonly audit?: AuditContext;
  /**
   * How long the purge waits for a lock (`SET LOCAL lock_timeout`), in milliseconds: for the
   * tenant's transactions still running (an instance that had not heard of the delete, or one left
   * idle in transaction), for another admin action on the registry row, for a row it deletes. Then
   * it gives up, deletes nothing and throws PurgeBlockedError (503): run it again later. Without a
   * limit a transaction left open would hold the purge, and the registry row it locks, forever.
   * Default 30 000.
   */
  readonly lockTimeoutMs?: number;
}

/** The purge waited `lockTimeoutMs` for a lock and gave up: nothing was deleted; run it again later. */
export class PurgeBlockedError extends TenantError {
  constructor(lockTimeoutMs: number, options?: TenantErrorOptions) {
    super('LBMT_PURGE_BLOCKED', `the purge waited ${lockTimeoutMs} ms for a lock (a transaction of the tenant still running, or another admin action on it) and gave up; nothing was deleted: run it again later`, 503, true, options);
  }
}

interface TenantColumnRow {
  table: string;
  schema: string;
  name: string;
  column: string;
}

/**
 * Removes a deleted tenant's rows from every table that has a tenant column — found in the catalog,
 * not only the configured tables (a table someone forgot to add still holds the tenant's data) — in
 * foreign-key-safe order (children first), then counts each table again and reports, table by
 * table, that zero rows remain. Runs through `pool`, a role that sees and may delete every row (the
 * admin role: BYPASSRLS; grant it DELETE on tables outside the config). All tables are one
 * transaction, so no reader ever sees the tenant half-purged; when a table fails (a privilege, a
 * foreign key from a table without a tenant column) the purge is rolled back, its report names each
 * cause (PurgeIncompleteError), and it can be run again after the fix. The registry row is kept (status
 * `deleted`: the id is never reused) and touched, so every instance's cache drops the tenant.
 *
 * A tenant column is a column with the name of a configured `tenantColumn` (or `tenant_id`) and the
 * tenancy's id type. Partitions and inheritance children are purged through their parent.
 *
 * @example
 * await admin.deleteTenant(id);                  // requests refused at once
 * const report = await purgeTenant(adminPool, id, { tenancy });
 */
export function purgeTenant(pool: Queryable, tenantId: string | number | bigint, options: PurgeOptions = {}): Promise<PurgeReport> {
  const type = (options.tenancy ?? DEFAULT_TENANCY).tenantIdType;
  return observeOperation('purge', tenantIdOrNull(() => canonicalTenantId(tenantId, type)), () => purge(pool, tenantId, options));
}

async function purge(pool: Queryable, tenantId: string | number | bigint, options: PurgeOptions): Promise<PurgeReport> {
  const tenancy = options.tenancy ?? DEFAULT_TENANCY;
  const lockTimeoutMs = options.lockTimeoutMs ?? 30_000;
  if (!isTimeoutMs(lockTimeoutMs)) throw new TypeError(`\`lockTimeoutMs\` must be a positive integer (milliseconds) up to ${MAX_TIMEOUT_MS}`);
  // Checked before any work: not found invalid by the audit row's INSERT after the deletes.
  const audit = auditContext(options.audit);
  const id = canonicalTenantId(tenantId, tenancy.tenantIdType);
  const { rows: registry } = await pool.query('SELECT status FROM linkbay.tenants WHERE id = $1', [id]);
  if (!registry[0]) throw new TenantNotFoundError();
  if (registry[0].status !== 'deleted') throw new TenantInputError('only a deleted tenant can be purged: delete it first, so that no request is served while its rows go');

  const tables = await tenantTables(pool, tenancy);
  const configured = new Set(tenancy.tables.map((t) => qualifiedName(t)));
  const nameOf = (table: TenantColumnRow) => qualifiedName({ schema: table.schema, table: table.name });
  const whereOf = (table: TenantColumnRow) => `${quoteIdent(table.column)} = $1`;
  const count = async (db: Queryable, table: TenantColumnRow) => Number((await db.query(`SELECT count(*) AS n FROM ${nameOf(table)} WHERE ${whereOf(table)}`, [id])).rows[0]?.n);
  // One transaction for every table: a request of an instance that has not heard of the delete yet
  // sees the tenant whole or gone, never half-purged (MVCC). A table that fails is rolled back to its
  // savepoint so that the others are still tried and the report names every cause; then the whole
  // purge is rolled back, nothing is deleted, and a re-run after the fix does it all at once.
  async function purgeTables(tx: Queryable): Promise<PurgeReport> {
    await tx.query(`SELECT pg_catalog.set_config('lock_timeout', $1, true)`, [`${lockTimeoutMs}ms`]);
    // Still deleted, and stays so until COMMIT (no activate in between).
    const { rows: locked } = await tx.query('SELECT status FROM linkbay.tenants WHERE id = $1 FOR UPDATE', [id]);
    if (locked[0]?.status !== 'deleted') throw new TenantInputError('only a deleted tenant can be purged: delete it first, so that no request is served while its rows go');
    // The tenant's write key (src/write-gate.ts), exclusively: waits for its transactions still
    // running here (an instance that had not heard of the delete), so their rows are purged too; the
    // ones after it are read-only until COMMIT. Without it a late INSERT could commit after the count.
    await tx.query(WRITE_FREEZE_SQL, [id]);
    const results: PurgedTable[] = [];
    for (const table of tables) {
      let deleted = 0;
      let remaining: number | null = null;
      let error: string | undefined;
      await tx.query('SAVEPOINT lbmt_purge_table');
      try {
        deleted = (await tx.query(`DELETE FROM ${nameOf(table)} WHERE ${whereOf(table)}`, [id])).rowCount ?? 0;
        remaining = await count(tx, table);
        await tx.query('RELEASE SAVEPOINT lbmt_purge_table');
      } catch (e) {
        // Waiting too long for a row is the whole purge blocked, not this table broken: run it again later.
        if ((e as { code?: unknown }).code === LOCK_NOT_AVAILABLE) throw e;
        error = describe(e);
        await tx.query('ROLLBACK TO SAVEPOINT lbmt_purge_table');
      }
      results.push({ table: table.table, column: table.column, configured: configured.has(nameOf(table)), deleted, remaining, ...(error ? { error } : {}) });
    }
    const report: PurgeReport = { tenantId: id, tables: results, complete: results.every((t) => t.remaining === 0 && !t.error) };
    if (!report.complete) throw new PurgeRolledBack(report);
    return report;
  }
  const attempt = await inAdminTransaction(pool, async (tx) => {
    // All of it in a savepoint, and the lock timeout restored: on a client already in a transaction
    // this joins the caller's, where a purge that failed must leave nothing deleted (its transaction
    // is not aborted: a failing table was rolled back to its own savepoint) and its SET LOCAL must not
    // outlive it.
    const { rows: timeout } = await tx.query(`SELECT pg_catalog.current_setting('lock_timeout') AS value`);
    await tx.query('SAVEPOINT lbmt_purge');
    try {
      const report = await purgeTables(tx);
      await tx.query(`SELECT pg_catalog.set_config('lock_timeout', $1, true)`, [timeout[0].value]);
      await tx.query('RELEASE SAVEPOINT lbmt_purge');
      // Touch the registry row: its trigger notifies every instance, whose caches drop the tenant. The
      // audit row (the report, table by table) commits with the deletes.
      await tx.query('UPDATE linkbay.tenants SET updated_at = now() WHERE id = $1', [id]);
      await writeAudit(tx, { action: 'purge', tenantId: id, after: report, context: audit });
      return report;
    } catch (error) {
      await tx.query('ROLLBACK TO SAVEPOINT lbmt_purge').catch(() => undefined);
      throw error;
    }
  }).catch((error: unknown) => {
    if (error instanceof PurgeRolledBack) return error;
    if ((error as { code?: unknown } | null)?.code === LOCK_NOT_AVAILABLE) throw new PurgeBlockedError(lockTimeoutMs, { cause: error });
    throw error;
  });
  if (!(attempt instanceof PurgeRolledBack)) return attempt;
  // Rolled back: what is there now, table by table, and the causes the attempt met.
  const tablesNow: PurgedTable[] = [];
  for (const [i, table] of tables.entries()) {
    const tried = attempt.report.tables[i]!;
    let remaining: number | null = null;
    let error = tried.error;
    try {
      remaining = await count(pool, table);
    } catch (e) {
      error ??= describe(e);
    }
    tablesNow.push({ ...tried, deleted: 0, remaining, ...(error ? { error } : {}) });
  }
  const report: PurgeReport = { tenantId: id, tables: tablesNow, complete: false };
  await inAdminTransaction(pool, (tx) => writeAudit(tx, { action: 'purge', tenantId: id, after: report, context: audit }));
  throw new PurgeIncompleteError(report);
}

/** SQLSTATE 55P03: lock_timeout expired. */
const LOCK_NOT_AVAILABLE = '55P03';

/** Internal: a purge attempt that must roll back (a table failed), carrying what it found. */
class PurgeRolledBack extends Error {
  constructor(readonly report: PurgeReport) {
    super('purge rolled back');
  }
}

/** Tables with a tenant column, children before the parents they reference. */
async function tenantTables(pool: Queryable, tenancy: TenancyConfig): Promise<TenantColumnRow[]> {
  const columns = [...new Set(['tenant_id', ...tenancy.tables.map((t) => t.tenantColumn)])];
  const types = tenancy.tenantIdType === 'text' ? ['text', 'character varying'] : [tenancy.tenantIdType];
  const { rows } = await pool.query(
    `SELECT n.nspname || '.' || c.relname AS "table", n.nspname AS schema, c.relname AS name, a.attname AS column, c.oid::int AS oid
       FROM pg_catalog.pg_attribute a
       JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE a.attname = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped
        AND pg_catalog.format_type(a.atttypid, NULL) = ANY($2)
        AND c.relkind IN ('r', 'p')
        AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'linkbay') AND n.nspname NOT LIKE 'pg\\_%'
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid)
      ORDER BY 1, 4`,
    [columns, types],
  );
  // One tenant column per table: the configured one, else the first found.
  const byTable = new Map<number, TenantColumnRow & { oid: number }>();
  const configuredColumn = new Map(tenancy.tables.map((t) => [qualifiedName(t), t.tenantColumn]));
  for (const row of rows as Array<TenantColumnRow & { oid: number }>) {
    const wanted = configuredColumn.get(qualifiedName({ schema: row.schema, table: row.name }));
    const seen = byTable.get(row.oid);
    if (!seen || (wanted !== undefined && row.column === wanted)) byTable.set(row.oid, row);
  }
  const { rows: edges } = await pool.query(
    `SELECT conrelid::int AS child, confrelid::int AS parent FROM pg_catalog.pg_constraint
      WHERE contype = 'f' AND conrelid <> confrelid AND conrelid = ANY($1) AND confrelid = ANY($1)`,
    [[...byTable.keys()]],
  );
  return childrenFirst([...byTable.values()], edges as Array<{ child: number; parent: number }>);
}

/** Topological order over foreign keys: a table comes before every table it references. */
function childrenFirst<T extends { oid: number; table: string }>(tables: T[], edges: Array<{ child: number; parent: number }>): T[] {
  const referencedBy = new Map<number, number>(); // parent → children not yet placed
  for (const e of edges) referencedBy.set(e.parent, (referencedBy.get(e.parent) ?? 0) + 1);
  const ordered: T[] = [];
  const left = new Map(tables.map((t) => [t.oid, t]));
  while (left.size > 0) {
    const ready = [...left.values()].filter((t) => !referencedBy.get(t.oid));
    if (ready.length === 0) {
      // A cycle of foreign keys: delete in name order; a failing table is reported, a re-run finishes.
      ordered.push(...left.values());
      break;
    }
    for (const t of ready) {
      ordered.push(t);
      left.delete(t.oid);
      for (const e of edges) if (e.child === t.oid) referencedBy.set(e.parent, (referencedBy.get(e.parent) ?? 1) - 1);
    }
  }
  return ordered;
}

function describe(error: unknown): string {
  const e = error as { code?: string; message?: string };
  return `${e.code ? `${e.code} ` : ''}${e.message ?? String(error)}`;
}
