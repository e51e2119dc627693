import { DEFAULT_TENANCY, qualifiedName, quoteIdent, type TenancyConfig, type TenantTable } from './config.js';
import { TenancyConfigError, TenantInputError } from './errors.js';
import type { TenantAdminService } from './admin.js';
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
}

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

  constructor(private readonly options: TenantMigrationServiceOptions) {
    this.tenancy = options.tenancy ?? DEFAULT_TENANCY;
    if (this.tenancy.tables.length === 0) throw new TenancyConfigError('`tenancy.tables` must list the tenant tables to migrate');
  }

  /** The tenant's rows, from the database it lives in now. */
  async exportTenantData(tenantId: string): Promise<TenantExport> {
    const tenant = await this.options.admin.getTenant(tenantId);
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
    for (const part of data.tables) if (!byName.has(part.table)) throw new TenantInputError(`\`${part.table}\` is not a tenant table of the config`);
    return withTenantTransaction(
      targetPool,
      id,
      async (tx) => {
        const counts: Record<string, number> = {};
        for (const table of this.tenancy.tables) {
          const name = `${table.schema}.${table.table}`;
          const existing = await tx.query(`SELECT 1 FROM ${qualifiedName(table)} LIMIT 1`);
          if (existing.rowCount) throw new TenantInputError(`the target already holds rows of this tenant in ${name}`);
          const part = data.tables.find((p) => p.table === name);
          counts[name] = part ? await this.insert(tx, table, part.columns, part.rows) : 0;
        }
        return { counts };
      },
      { tenancy: this.tenancy },
    );
  }

  /** Moves (or copies, without `deleteSource`) the tenant to another database. */
  async moveTenant(tenantId: string, options: MoveOptions): Promise<ImportResult> {
    const { admin, pools } = this.options;
    const before = await admin.getTenant(tenantId);
    const id = before.id;
    if (before.status === 'deleted') throw new TenantInputError('a deleted tenant cannot be moved');
    if ((before.databaseUrl ?? null) === (options.databaseUrl ?? null)) throw new TenantInputError('the tenant already lives in that database');
    // Suspended for the move: its requests are refused on every instance, so nothing is written to
    // the source meanwhile.
    if (before.status === 'active') await admin.suspendTenant(id);
    let result: ImportResult;
    try {
      const data = await pools.usePool(before, (source) => this.exportFrom(source, id));
      result = await this.importTenantData(id, data, options.targetPool);
      await admin.updateTenant(id, { databaseUrl: options.databaseUrl });
    } catch (error) {
      if (before.status === 'active') await admin.activateTenant(id).catch(() => undefined);
      throw error;
    }
    if (before.status === 'active') await admin.activateTenant(id);
    if (options.deleteSource) await pools.usePool(before, (source) => this.deleteFrom(source, id));
    await pools.closeTenantPool(id).catch(() => undefined);
    return result;
  }

  private async exportFrom(pool: TenantPool, tenantId: string): Promise<TenantExport> {
    return withTenantTransaction(
      pool,
      tenantId,
      async (tx) => {
        const tables: Array<TenantExport['tables'][number]> = [];
        for (const table of this.tenancy.tables) {
          const result = await tx.query({ text: `SELECT * FROM ${qualifiedName(table)}`, rowMode: 'array' });
          tables.push({ table: `${table.schema}.${table.table}`, columns: result.fields.map((f) => f.name), rows: result.rows as unknown[][] });
        }
        return { tenantId: tx.tenantId, exportedAt: new Date(), tables };
      },
      { tenancy: this.tenancy, readOnly: true, isolationLevel: 'repeatable read' },
    );
  }

  private async deleteFrom(pool: TenantPool, tenantId: string): Promise<void> {
    await withTenantTransaction(
      pool,
      tenantId,
      async (tx) => {
        for (const table of [...this.tenancy.tables].reverse()) await tx.query(`DELETE FROM ${qualifiedName(table)}`);
      },
      { tenancy: this.tenancy },
    );
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
      await tx.query(
        `SELECT pg_catalog.setval($1::regclass, GREATEST(COALESCE(max(${quoteIdent(column.name)}), 1), COALESCE(pg_catalog.pg_sequence_last_value($1::regclass), 1)))
           FROM ${qualifiedName(table)}`,
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
