/**
 * Classification: every table in the application's schemas is a tenant table (`tables`), a global
 * table (`globalTables`), or exempt (`exemptTables`, with a reason). A table nobody classified that
 * has a column named like the tenant column is almost certainly tenant data without a policy.
 *
 * | code                          | severity | what                                                          |
 * |-------------------------------|----------|---------------------------------------------------------------|
 * | LBMT_TENANT_TABLE_UNLISTED    | error    | an unclassified table has a tenant-like column: no policy guards it |
 * | LBMT_TABLE_UNCLASSIFIED       | warning  | an unclassified table (no tenant-like column)                  |
 * | LBMT_CLASSIFIED_TABLE_MISSING | warning  | a global or exempt table of the config does not exist          |
 *
 * The application's schemas: `public` and every schema the config names. Partitions and
 * inheritance children follow their parent; tables of extensions and @databases/pg-migrations'
 * bookkeeping tables are exempt by themselves.
 */
import { quoteIdent, type TenancyConfig } from '../config.js';
import type { Finding } from './index.js';
import type { Queryable } from '../pool.js';

const BOOKKEEPING = new Set(['public.atdatabases_migrations_applied', 'public.atdatabases_migrations_version']);

export async function classificationFindings(pool: Queryable, config: TenancyConfig): Promise<Finding[]> {
  const tenant = new Set(config.tables.map((t) => `${t.schema}.${t.table}`));
  const global = new Set(config.globalTables);
  const exempt = new Set(config.exemptTables.map((t) => t.name));
  const schemaOf = (key: string) => key.slice(0, key.indexOf('.'));
  const schemas = [...new Set(['public', ...[...tenant, ...global, ...exempt].map(schemaOf)])];
  const tenantColumns = [...new Set(['tenant_id', config.tenantColumn, ...config.tables.map((t) => t.tenantColumn)])];
  const { rows } = await pool.query(
    `SELECT n.nspname || '.' || c.relname AS key, n.nspname AS schema, c.relname AS name,
            (SELECT min(a.attname::text) FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attname = ANY($2)) AS tenant_column
       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY($1)
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid)
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                         WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
      ORDER BY 1`,
    [schemas, tenantColumns],
  );
  const findings: Finding[] = [];
  const present = new Set<string>();
  for (const row of rows as Array<{ key: string; schema: string; name: string; tenant_column: string | null }>) {
    present.add(row.key);
    if (tenant.has(row.key) || global.has(row.key) || exempt.has(row.key) || BOOKKEEPING.has(row.key)) continue;
    const object = `${quoteIdent(row.schema)}.${quoteIdent(row.name)}`;
    if (row.tenant_column) {
      findings.push({
        code: 'LBMT_TENANT_TABLE_UNLISTED',
        severity: 'error',
        object,
        message: `has a ${row.tenant_column} column but is not in the config: no policy isolates its rows, every tenant sees all of them`,
        fix: `add "${row.key}" to \`tables\` and generate its migration (linkbay-multitenant generate), or to \`exemptTables\` with the reason it is not tenant data`,
      });
    } else {
      findings.push({
        code: 'LBMT_TABLE_UNCLASSIFIED',
        severity: 'warning',
        object,
        message: 'is neither a tenant table, a global table nor exempt in the config',
        fix: `add "${row.key}" to \`globalTables\` (shared by all tenants) or to \`exemptTables\` with a reason`,
      });
    }
  }
  for (const key of [...global, ...exempt]) {
    if (present.has(key)) continue;
    findings.push({
      code: 'LBMT_CLASSIFIED_TABLE_MISSING',
      severity: 'warning',
      object: key,
      message: `is listed in ${global.has(key) ? '`globalTables`' : '`exemptTables`'} but does not exist`,
      fix: 'remove it from the config, or create it',
    });
  }
  return findings;
}
