import { qualifiedName, type TenantTable } from '../config.js';
import type { TenantClient } from '../pool.js';
import type { ExportTable } from './format.js';

export interface TableShape extends ExportTable {
  /** Columns whose values come from a sequence (identity or serial), with the sequence. */
  readonly sequences: ReadonlyArray<{ readonly column: string; readonly sequence: string }>;
  /** Whether a column is GENERATED ALWAYS AS IDENTITY (its values are written OVERRIDING SYSTEM VALUE). */
  readonly identityAlways: readonly string[];
}

/**
 * A tenant table as this database has it: stored columns in order (generated columns are left out:
 * the target computes them), their types, the primary key, and the sequences behind columns.
 */
export async function tableShape(client: TenantClient, table: TenantTable): Promise<TableShape> {
  const name = qualifiedName(table);
  const { rows } = (await client.query(
    `SELECT a.attname AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, a.attidentity AS identity,
            pg_catalog.pg_get_serial_sequence($1, a.attname) AS sequence,
            COALESCE(a.attnum = ANY (k.conkey), false) AS in_key, pg_catalog.array_position(k.conkey, a.attnum) AS key_position
       FROM pg_catalog.pg_attribute a
       LEFT JOIN pg_catalog.pg_constraint k ON k.conrelid = a.attrelid AND k.contype = 'p'
      WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
      ORDER BY a.attnum`,
    [name],
  )) as { rows: Array<{ name: string; type: string; identity: string; sequence: string | null; in_key: boolean; key_position: number | null }> };
  return {
    name: `${table.schema}.${table.table}`,
    columns: rows.map((r) => ({ name: r.name, type: r.type })),
    key: rows.filter((r) => r.in_key).sort((a, b) => a.key_position! - b.key_position!).map((r) => r.name),
    sequences: rows.filter((r) => r.sequence).map((r) => ({ column: r.name, sequence: r.sequence! })),
    identityAlways: rows.filter((r) => r.identity === 'a').map((r) => r.name),
  };
}
