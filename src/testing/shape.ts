/**
 * What the isolation check knows of one tenant table: its shape (identity columns, insertable
 * columns) read from pg_catalog, the truth the admin role sees of a tenant, and the SQL built from
 * them. Row values are never printed beyond identity columns.
 */
import { qualifiedName, quoteIdent, type TenantTable } from '../config.js';
import type { Queryable } from '../pool.js';

/** What the check needs of the admin pool; a `pg.Pool` fits. */
export type AdminQueryable = Queryable;

/** A multiset fingerprint of row identities: order-free, and it changes when any identity does. */
export const FINGERPRINT = (identity: string) => `coalesce(sum(hashtextextended(${identity}, 0)), 0)::text`;
export const EXAMPLES = 5;

export interface TableShape {
  readonly name: string;
  readonly sql: string;
  readonly column: string;
  readonly tenantColumn: string;
  readonly key: readonly string[];
  readonly insertable: readonly string[];
}

export interface Truth {
  readonly count: number;
  readonly fingerprint: string;
  /** One row of the tenant: its identity values as text and the whole row as jsonb text (kept in memory, never printed). */
  readonly sample?: { readonly key: readonly string[]; readonly row: string };
}

/** Identities as `(tenant_id, id)=(...)`; rows of tables without a primary key are not shown. */
export function examples(shape: TableShape, ids: readonly string[]): string {
  if (shape.key.length === 0) return ' (no primary key: rows not shown)';
  const columns = `(${shape.key.join(', ')})`;
  const more = ids.length > EXAMPLES ? `, ... ${ids.length - EXAMPLES} more` : '';
  return `: ${ids.slice(0, EXAMPLES).map((id) => `${columns}=${id}`).join(', ')}${more}`;
}

/** Row identity as text: the primary key, else the whole row. */
export function identity(shape: TableShape): string {
  if (shape.key.length === 0) return '(lbmt_row.*)::text';
  return `ROW(${shape.key.map((column) => `lbmt_row.${quoteIdent(column)}`).join(', ')})::text`;
}

/** `WHERE` for one row by the identity values `readTruth` sampled, parameters from `$first` on. */
export function keyMatch(shape: TableShape, first: number): string {
  if (shape.key.length === 0) return `(lbmt_row.*)::text = $${first}`;
  return shape.key.map((column, i) => `lbmt_row.${quoteIdent(column)} = $${first + i}`).join(' AND ');
}

/**
 * INSERT of a copy of a sampled row with the tenant column replaced ($1 row as jsonb, $2 tenant
 * column, $3 tenant). Generated and identity columns are left to their defaults.
 */
export function insertCopy(shape: TableShape): string {
  const columns = shape.insertable.map(quoteIdent);
  return `INSERT INTO ${shape.sql} (${columns.join(', ')})
    SELECT ${columns.map((column) => `lbmt_row.${column}`).join(', ')}
    FROM jsonb_populate_record(NULL::${shape.sql}, $1::jsonb || jsonb_build_object($2::text, $3::text)) AS lbmt_row`;
}

/** The table's primary key and insertable columns from pg_catalog; a string says why it cannot be checked. */
export async function readShape(admin: AdminQueryable, table: TenantTable): Promise<TableShape | string> {
  const sql = qualifiedName(table);
  const { rows } = await admin.query(
    `SELECT
       (SELECT array_agg(a.attname::text ORDER BY k.ord)
          FROM pg_catalog.pg_index i
          CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE i.indrelid = c.oid AND i.indisprimary) AS key,
       (SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' AND a.attidentity = '') AS insertable,
       EXISTS (SELECT FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attname = $2) AS has_tenant_column
     FROM pg_catalog.pg_class c WHERE c.oid = to_regclass($1)`,
    [sql, table.tenantColumn],
  );
  const row = rows[0];
  if (!row) return 'table not found';
  if (!row.has_tenant_column) return `tenant column ${table.tenantColumn} not found`;
  return {
    name: `${table.schema}.${table.table}`,
    sql,
    column: quoteIdent(table.tenantColumn),
    tenantColumn: table.tenantColumn,
    key: row.key ?? [],
    insertable: row.insertable ?? [],
  };
}

/** What the admin role sees of one tenant: count, fingerprint and one sample row. */
export async function readTruth(admin: AdminQueryable, shape: TableShape, tenantId: string): Promise<Truth> {
  const counted = await admin.query(
    `SELECT count(*)::text AS n, ${FINGERPRINT(identity(shape))} AS fingerprint FROM ${shape.sql} AS lbmt_row WHERE lbmt_row.${shape.column} = $1`,
    [tenantId],
  );
  const keyColumns = shape.key.length === 0 ? ['(lbmt_row.*)::text AS k0'] : shape.key.map((column, i) => `lbmt_row.${quoteIdent(column)}::text AS k${i}`);
  const sampled = await admin.query(
    `SELECT ${keyColumns.join(', ')}, to_jsonb(lbmt_row.*)::text AS lbmt_row_json FROM ${shape.sql} AS lbmt_row WHERE lbmt_row.${shape.column} = $1 LIMIT 1`,
    [tenantId],
  );
  const sample = sampled.rows[0];
  return {
    count: Number(counted.rows[0].n),
    fingerprint: String(counted.rows[0].fingerprint),
    ...(sample && { sample: { key: keyColumns.map((_, i) => String(sample[`k${i}`])), row: String(sample.lbmt_row_json) } }),
  };
}
