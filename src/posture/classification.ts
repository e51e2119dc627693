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
 * The application's schemas: `public` and every schema the config names; in any other schema (but
 * the system's and linkbay), tables the runtime role may reach that have a tenant-like column. Partitions and
 * inheritance children follow their parent; tables of extensions and @databases/pg-migrations'
 * bookkeeping tables are exempt by themselves.
 */
import { quoteIdent, type TenancyConfig } from '../config.js';
import type { Finding } from './index.js';
import type { Queryable } from '../pool.js';

const BOOKKEEPING = new Set(['public.atdatabases_migrations_applied', 'public.atdatabases_migrations_version']);

export async function classificationFindings(pool: Queryable, config: TenancyConfig, runtimeRole = config.roles.app): Promise<Finding[]> {
  const tenant = new Set(config.tables.map((t) => `${t.schema}.${t.table}`));
  const global = new Set(config.globalTables);
  const exempt = new Set(config.exemptTables.map((t) => t.name));
  const schemaOf = (key: string) => key.slice(0, key.indexOf('.'));
  const schemas = [...new Set(['public', ...[...tenant, ...global, ...exempt].map(schemaOf)])];
  const tenantColumns = [...new Set(['tenant_id', config.tenantColumn, ...config.tables.map((t) => t.tenantColumn)])];
  const { rows } = await pool.query(
    `SELECT n.nspname || '.' || c.relname AS key, n.nspname AS schema, c.relname AS name, n.nspname = ANY($1) AS app_schema,
            (SELECT min(a.attname::text) FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attname = ANY($2)) AS tenant_column
       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_catalog.pg_roles rt ON rt.rolname = $3
      -- Foreign tables too: one mapped to a role that bypasses RLS (or to another server) serves
      -- tenant rows no policy here limits.
      WHERE c.relkind IN ('r', 'p', 'f') AND NOT c.relispartition
        -- The application's schemas, and any other where the runtime role can reach the table: a
        -- copy of tenant rows in a schema nobody named (an archive, a backup) is as readable.
        AND (n.nspname = ANY($1)
             OR (n.nspname NOT LIKE 'pg\\_%' AND n.nspname NOT IN ('information_schema', 'linkbay') AND rt.oid IS NOT NULL
                 AND pg_catalog.has_schema_privilege(rt.oid, n.oid, 'USAGE')
                 AND pg_catalog.has_table_privilege(rt.oid, c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')))
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid)
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                         WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
      ORDER BY 1`,
    [schemas, tenantColumns, runtimeRole],
  );
  const findings: Finding[] = [];
  const present = new Set<string>();
  for (const row of rows as Array<{ key: string; schema: string; name: string; app_schema: boolean; tenant_column: string | null }>) {
    present.add(row.key);
    if (tenant.has(row.key) || global.has(row.key) || exempt.has(row.key) || BOOKKEEPING.has(row.key)) continue;
    if (!row.app_schema && !row.tenant_column) continue; // outside the application's schemas only tenant-like tables are reported
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
