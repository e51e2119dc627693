import { DEFAULT_TENANCY, qualifiedName, quoteIdent, type TenancyConfig, type TenantTable } from './config.js';
import { TenancyConfigError, TenantInputError, TenantIsolationError } from './errors.js';
import type { TenantAdminService } from './admin.js';
import { auditContext, type AuditContext } from './audit.js';
import type { TenantDBPool } from './db-pool.js';
import { withTenantTransaction, type TenantPool, type TenantTransaction } from './transaction.js';

/** One tenant's rows, table by table, in the config's order. */
export interface TenantExport {
  readonly tenantId: string;
  readonly exportedAt: Date;
  readonly tables: ReadonlyArray<{
    /** Qualified name as in the config, e.g. `public.orders`. */
    readonly table: string;
    readonly columns: readonly string[];
    readonly rows: ReadonlyArray<readonly unknown[]>;
  }>;
}

export interface ImportResult {
  /** Rows written per table. */
  readonly counts: Readonly<Record<string, number>>;
}

export interface MoveOptions {
  /** The URL the registry will hold: the target database as the app role (TenantDBPool connects with it). */
  readonly databaseUrl: string | null;
  /**
   * A pool on the target database as a role that may write the tenant's rows and owns the tables'
   * sequences (the owner role): identity and serial sequences are moved past the imported ids.
   * RLS applies to it (the tables are FORCEd), so it can write only this tenant's rows.
   */
  readonly targetPool: TenantPool;
  /** Delete the rows from the source once the registry points at the target. Default false (copy). */
  readonly deleteSource?: boolean;
  /**
   * How long to wait after suspending the tenant before reading its rows, for transactions already
   * running and for other instances to hear of the suspension (NOTIFY, or their cache TTL when they
   * do not listen). Default 2000 ms.
   */
  readonly settleMs?: number;
}

/** Raw text of every value: exported values are written back exactly (no Date or JSON round trip). */
const AS_TEXT = { getTypeParser: () => (value: string) => value };

export interface TenantMigrationServiceOptions {
  /** Where each tenant's rows are now. */
  readonly pools: TenantDBPool;
  /** To suspend the tenant during a move and switch its `databaseUrl`. */
  readonly admin: TenantAdminService;
  /** Its `tables`, parents before children: the order rows are written in (and deleted in reverse). */
  readonly tenancy?: TenancyConfig;
}

interface TargetColumn {
  name: string;
  identity: string;
  generated: string;
  sequence: string | null;
}

/**
 * Copies or moves one tenant's rows between databases (the seed's TenantMigrationService), under
 * RLS at both ends, so that only that tenant's rows can be read and written:
 *
 * - export reads every tenant table in one REPEATABLE READ, READ ONLY transaction as the tenant
 *   (a consistent snapshot; RLS returns exactly its rows);
 * - import writes them in ONE transaction as the tenant on the target: all tables or none (the
 *   seed's was table by table), WITH CHECK refuses a row of another tenant, and the written counts
 *   are compared with the export before COMMIT; identity and serial sequences are moved past the
 *   imported values;
 * - move suspends the tenant (its requests are refused, so nothing is written meanwhile), exports,
 *   imports, switches the registry's `databaseUrl`, reactivates it if it was active, and only then,
 *   if asked, deletes the source rows. A failure before the switch leaves the source as it was and
 *   the tenant in its previous status.
 *
 * Rows travel in memory: for tenants of up to some hundred thousand rows. Values keep their types
 * in-process (move); the HTTP export is JSON, for inspection (a dry run).
 */
export class TenantMigrationService {
  private readonly tenancy: TenancyConfig;
  /** Tenants being moved by this instance (moves from several instances must be serialised by you). */
  private readonly moving = new Set<string>();

  constructor(private readonly options: TenantMigrationServiceOptions) {
    this.tenancy = options.tenancy ?? DEFAULT_TENANCY;
    if (this.tenancy.tables.length === 0) throw new TenancyConfigError('`tenancy.tables` must list the tenant tables to migrate');
  }

  /**
   * The tenant's rows, from the database it lives in now. With `audit` (the HTTP export: rows
   * handed out), the `export` audit row is written first, as for TenantPortability's export: its
   * actor and reason, else the current audit scope's.
   */
  async exportTenantData(tenantId: string, options: { readonly audit?: AuditContext } = {}): Promise<TenantExport> {
    const context = options.audit ? auditContext(options.audit) : undefined;
    const tenant = await this.options.admin.getTenant(tenantId);
    if (context) await this.options.admin.recordAudit({ action: 'export', tenantId: tenant.id, after: { tables: this.tenancy.tables.map((t) => `${t.schema}.${t.table}`) }, context });
    return this.options.pools.usePool(tenant, (pool) => this.exportFrom(pool, tenant.id));
  }

  /**
   * Writes `data` into the database of `targetPool` in one transaction, as the tenant. Refused
   * (TenantInputError) when the target already holds rows of this tenant, or when `data` is for
   * another tenant or names tables not in the config.
   */
  async importTenantData(tenantId: string, data: TenantExport, targetPool: TenantPool): Promise<ImportResult> {
    const id = await this.canonical(tenantId);
    if (data.tenantId !== id) throw new TenantInputError('the export is of another tenant');
    const byName = new Map(this.tenancy.tables.map((t) => [`${t.schema}.${t.table}`, t]));
    const seen = new Set<string>();
    for (const part of data.tables) {
      const table = byName.get(part.table);
      if (!table) throw new TenantInputError(`\`${part.table}\` is not a tenant table of the config`);
      if (seen.has(part.table)) throw new TenantInputError(`\`${part.table}\` appears twice in the export`);
      seen.add(part.table);
      const column = part.columns.indexOf(table.tenantColumn);
      if (column === -1) throw new TenantInputError(`${part.table}: the export has no \`${table.tenantColumn}\` column`);
      // RLS refuses these too; checked here first so that the error says what is wrong.
      if (part.rows.some((row) => String(row[column]).toLowerCase() !== id)) throw new TenantIsolationError(`${part.table}: the export holds rows of another tenant`);
    }
    return withTenantTransaction(
      targetPool,
      id,
      async (tx) => {
        const counts: Record<string, number> = {};
        for (const table of this.tenancy.tables) {
          const name = `${table.schema}.${table.table}`;
          // WITH CHECK is the guarantee: a pool whose role bypasses RLS on the target is refused.
          const { rows: active } = await tx.query('SELECT pg_catalog.row_security_active($1::regclass) AS on', [qualifiedName(table)]);
          if (!active[0]?.on) throw new TenancyConfigError(`row level security does not apply to the target pool's role on ${name}; use the owner role`);
          const existing = await tx.query(`SELECT 1 FROM ${qualifiedName(table)} WHERE ${quoteIdent(table.tenantColumn)} = $1 LIMIT 1`, [id]);
          if (existing.rowCount) throw new TenantInputError(`the target already holds rows of this tenant in ${name}`);
          const part = data.tables.find((p) => p.table === name);
          counts[name] = part ? await this.insert(tx, table, part.columns, part.rows) : 0;
        }
        return { counts };
      },
      { tenancy: this.tenancy },
    );
  }

  /**
   * Moves (or copies, without `deleteSource`) the tenant to another database. Before the registry is
   * switched the rows are counted through `databaseUrl` as the app role, so a URL that does not reach
   * the imported rows is refused and the import undone. The source rows are deleted only when they
   * are still exactly the exported ones; otherwise they are kept and the move reports it.
   */
  async moveTenant(tenantId: string, options: MoveOptions): Promise<ImportResult & { sourceDeleted: boolean }> {
    const { admin, pools } = this.options;
    // Options first: a bad one must not leave the tenant suspended. They come from the server's
    // configuration (a router's `targets`), not from a request: a programming error, not a 422.
    const settleMs = options.settleMs ?? 2000;
    if (!Number.isSafeInteger(settleMs) || settleMs < 0) throw new TypeError('`settleMs` must be a non-negative integer (milliseconds)');
    if (!options.targetPool || typeof options.targetPool.connect !== 'function') throw new TypeError('`targetPool` must be a pg.Pool of the target database');
    if (options.databaseUrl !== undefined && options.databaseUrl !== null && typeof options.databaseUrl !== 'string') {
      throw new TypeError('`databaseUrl` must be a URL string, or null for the shared database');
    }
    const before = await admin.getTenant(tenantId);
    const id = before.id;
    if (before.status === 'deleted') throw new TenantInputError('a deleted tenant cannot be moved');
    if (before.status === 'provisioning') throw new TenantInputError('a provisioning tenant cannot be moved');
    const targetUrl = options.databaseUrl ?? null;
    if ((before.databaseUrl ?? null) === targetUrl) throw new TenantInputError('the tenant already lives in that database');
    if (this.moving.has(id)) throw new TenantInputError('this tenant is being moved already');
    this.moving.add(id);
    try {
      // Suspended for the move: its requests are refused on every instance once they hear of it.
      if (before.status === 'active') await admin.suspendTenant(id);
      await new Promise((resolve) => setTimeout(resolve, settleMs));
      let result: ImportResult | undefined;
      let data: TenantExport;
      try {
        data = await pools.usePool(before, (source) => this.exportFrom(source, id));
        result = await this.importTenantData(id, data, options.targetPool);
        // Through the URL the registry will hold, as the app will: the same rows, or no switch.
        const seen = await pools.usePool({ ...before, databaseUrl: targetUrl }, (pool) => this.countIn(pool, id));
        for (const [table, count] of Object.entries(result.counts)) {
          if (seen[table] !== count) throw new TenancyConfigError(`the database URL does not reach the imported rows (${table}: ${seen[table] ?? 0} of ${count})`);
        }
        await admin.updateTenant(id, { databaseUrl: targetUrl });
      } catch (error) {
        // Undo the import, so that the move can be tried again; the source is untouched.
        if (result) await withTenantTransaction(options.targetPool, id, (tx) => this.deleteAll(tx, id), { tenancy: this.tenancy }).catch(() => undefined);
        if (before.status === 'active') await admin.activateTenant(id).catch(() => undefined);
        throw error;
      }
      if (before.status === 'active') await admin.activateTenant(id);
      if (before.databaseUrl) await pools.closeDatabasePool(before.databaseUrl).catch(() => undefined);
      const sourceDeleted = options.deleteSource === true && (await pools.usePool(before, (source) => this.deleteIfUnchanged(source, id, result.counts)));
      return { ...result, sourceDeleted };
    } finally {
      this.moving.delete(id);
    }
  }

  private async exportFrom(pool: TenantPool, tenantId: string): Promise<TenantExport> {
    return withTenantTransaction(
      pool,
      tenantId,
      async (tx) => {
        const tables: Array<TenantExport['tables'][number]> = [];
        for (const table of this.tenancy.tables) {
          const result = await tx.query({
            text: `SELECT * FROM ${qualifiedName(table)} WHERE ${quoteIdent(table.tenantColumn)} = $1`,
            values: [tx.tenantId],
            rowMode: 'array',
            types: AS_TEXT,
          });
          tables.push({ table: `${table.schema}.${table.table}`, columns: result.fields.map((f) => f.name), rows: result.rows as unknown[][] });
        }
        return { tenantId: tx.tenantId, exportedAt: new Date(), tables };
      },
      { tenancy: this.tenancy, readOnly: true, isolationLevel: 'repeatable read' },
    );
  }

  /** Deletes the source rows when they are still as many as were exported (nothing written since). */
  private async deleteIfUnchanged(pool: TenantPool, tenantId: string, exported: Readonly<Record<string, number>>): Promise<boolean> {
    return withTenantTransaction(
      pool,
      tenantId,
      async (tx) => {
        const now = await this.countIn(tx, tenantId);
        if (Object.entries(exported).some(([table, count]) => now[table] !== count)) return false;
        await this.deleteAll(tx, tenantId);
        return true;
      },
      { tenancy: this.tenancy, isolationLevel: 'serializable' },
    );
  }

  private async deleteAll(tx: TenantTransaction, tenantId: string): Promise<void> {
    for (const table of [...this.tenancy.tables].reverse()) {
      await tx.query(`DELETE FROM ${qualifiedName(table)} WHERE ${quoteIdent(table.tenantColumn)} = $1`, [tenantId]);
    }
  }

  /** Rows of the tenant per table, on `on` (a pool: one transaction as the tenant; or an open one). */
  private async countIn(on: TenantPool | TenantTransaction, tenantId: string): Promise<Record<string, number>> {
    const count = async (tx: TenantTransaction) => {
      const counts: Record<string, number> = {};
      for (const table of this.tenancy.tables) {
        const { rows } = await tx.query(`SELECT count(*)::int AS n FROM ${qualifiedName(table)} WHERE ${quoteIdent(table.tenantColumn)} = $1`, [tenantId]);
        counts[`${table.schema}.${table.table}`] = rows[0].n as number;
      }
      return counts;
    };
    return 'connect' in on ? withTenantTransaction(on, tenantId, count, { tenancy: this.tenancy, readOnly: true }) : count(on);
  }

  private async insert(tx: TenantTransaction, table: TenantTable, columns: readonly string[], rows: ReadonlyArray<readonly unknown[]>): Promise<number> {
    if (rows.length === 0) return 0;
    const target = await this.targetColumns(tx, table);
    const byName = new Map(target.map((c) => [c.name, c]));
    for (const column of columns) {
      if (!byName.has(column)) throw new TenantInputError(`${table.schema}.${table.table} on the target has no column \`${column}\``);
    }
    // Generated columns are computed by the target; identity ALWAYS columns keep their values.
    const kept = columns.map((name, index) => ({ name, index })).filter(({ name }) => byName.get(name)!.generated === '');
    if (kept.length === 0) throw new TenantInputError(`${table.schema}.${table.table}: no column to write`);
    const overriding = kept.some(({ name }) => byName.get(name)!.identity === 'a') ? ' OVERRIDING SYSTEM VALUE' : '';
    const perStatement = Math.max(1, Math.floor(60_000 / kept.length)); // under the protocol's 65535 parameters
    let written = 0;
    for (let start = 0; start < rows.length; start += perStatement) {
      const chunk = rows.slice(start, start + perStatement);
      const values: unknown[] = [];
      const tuples = chunk.map((row) => `(${kept.map(({ index }) => `$${values.push(row[index])}`).join(', ')})`);
      const result = await tx.query(
        `INSERT INTO ${qualifiedName(table)} (${kept.map(({ name }) => quoteIdent(name)).join(', ')})${overriding} VALUES ${tuples.join(', ')}`,
        values,
      );
      written += result.rowCount ?? 0;
    }
    if (written !== rows.length) throw new Error(`${table.schema}.${table.table}: wrote ${written} of ${rows.length} rows`);
    // Sequences past the imported values (only forward: other tenants' values stay below).
    for (const column of target) {
      if (!column.sequence || !kept.some(({ name }) => name === column.name)) continue;
      // Only raised, and only when an imported value is at or past what the sequence would hand
      // out next (its last value, or below its start when never used); descending ones are left.
      await tx.query(
        `SELECT pg_catalog.setval($1::regclass, m.value)
           FROM (SELECT max(${quoteIdent(column.name)})::bigint AS value FROM ${qualifiedName(table)}) m,
                pg_catalog.pg_sequence q
          WHERE q.seqrelid = $1::regclass AND q.seqincrement > 0 AND m.value IS NOT NULL
            AND m.value >= COALESCE(pg_catalog.pg_sequence_last_value($1::regclass) + 1, q.seqstart)`,
        [column.sequence],
      );
    }
    return written;
  }

  private async targetColumns(tx: TenantTransaction, table: TenantTable): Promise<TargetColumn[]> {
    const { rows } = await tx.query(
      `SELECT a.attname AS name, a.attidentity AS identity, a.attgenerated AS generated,
              pg_catalog.pg_get_serial_sequence($1, a.attname) AS sequence
         FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum`,
      [qualifiedName(table)],
    );
    return rows as TargetColumn[];
  }

  private async canonical(tenantId: string): Promise<string> {
    return (await this.options.admin.getTenant(tenantId)).id;
  }
}
