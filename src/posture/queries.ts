/**
 * The catalog reads behind `doctor` (src/posture.ts). Each function is one statement over
 * pg_catalog only, readable by any role: the application role checking itself at start-up as well
 * as a superuser running the CLI. Rows come back as read; judging them is posture.ts's job.
 */
import type { TenantTable } from '../config.js';

import type { Queryable } from '../pool.js';
export type { Queryable } from '../pool.js';

export interface ServerRow {
  version: string;
  versionNum: number;
}

export async function readServer(db: Queryable): Promise<ServerRow> {
  const { rows } = await db.query(
    `SELECT current_setting('server_version') AS version, current_setting('server_version_num')::int AS version_num`,
  );
  return { version: rows[0].version, versionNum: rows[0].version_num };
}

/** Whether `linkbay.planner_tenants()` (plan classes, src/plan-classes.ts) exists, and `role` may call it. */
export async function readPlanClasses(db: Queryable, role: string): Promise<{ exists: boolean; executable: boolean }> {
  const { rows } = await db.query(
    `SELECT f.oid IS NOT NULL AS exists,
            f.oid IS NOT NULL AND r.oid IS NOT NULL AND pg_catalog.has_function_privilege(r.oid, f.oid, 'EXECUTE') AS executable
       -- From pg_proc, not to_regprocedure: that needs USAGE on the schema, which doctor's role may lack.
       FROM (SELECT (SELECT p.oid FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                      WHERE n.nspname = 'linkbay' AND p.proname = 'planner_tenants' AND p.pronargs = 0) AS oid) f
       LEFT JOIN pg_catalog.pg_roles r ON r.rolname = $1`,
    [role],
  );
  return { exists: rows[0].exists === true, executable: rows[0].executable === true };
}

/**
 * Predefined roles that reach the server's files as its OS user: the tables' data files (every
 * tenant's rows, no policy on the way), the configuration, a superuser connection by a program.
 */
export const SERVER_FILE_ROLES = ['pg_read_server_files', 'pg_write_server_files', 'pg_execute_server_program'];

export interface RoleRow {
  currentUser: string;
  currentBypassesRls: boolean;
  exists: boolean;
  superuser: boolean;
  bypassrls: boolean;
  createrole: boolean;
  /** Superuser or BYPASSRLS roles the runtime role is a member of (it can SET ROLE to them), and SERVER_FILE_ROLES. */
  escalations: string[];
  /**
   * Defaults for the tenant setting that a new session of the runtime role on this database starts
   * with (pg_db_role_setting): `{ role, database }`, null for ALL / every database.
   */
  settingDefaults: Array<{ role: string | null; database: string | null; value: string }>;
}

export async function readRole(db: Queryable, role: string, setting: string): Promise<RoleRow> {
  const { rows } = await db.query(
    `SELECT current_user::text AS current_user,
            (SELECT u.rolsuper OR u.rolbypassrls FROM pg_catalog.pg_roles u WHERE u.rolname = current_user) AS current_bypasses,
            r.oid IS NOT NULL AS exists, coalesce(r.rolsuper, false) AS superuser, coalesce(r.rolbypassrls, false) AS bypassrls,
            coalesce(r.rolcreaterole, false) AS createrole,
            CASE WHEN r.oid IS NULL OR r.rolsuper THEN '{}'::text[] ELSE ARRAY(
              SELECT s.rolname::text FROM pg_catalog.pg_roles s
              WHERE s.oid <> r.oid AND pg_catalog.pg_has_role(r.oid, s.oid, 'MEMBER')
                AND (s.rolsuper OR s.rolbypassrls OR s.rolname IN (${SERVER_FILE_ROLES.map((n) => `'${n}'`).join(', ')}))
              ORDER BY 1) END AS escalations,
            -- GUC names are case-insensitive; the last '=' form wins, as PostgreSQL reads them.
            coalesce((SELECT jsonb_agg(jsonb_build_object(
                        'role', CASE WHEN s.setrole = 0 THEN NULL ELSE pg_catalog.pg_get_userbyid(s.setrole)::text END,
                        'database', (SELECT d.datname::text FROM pg_catalog.pg_database d WHERE d.oid = s.setdatabase),
                        'value', substr(c.entry, length($2) + 2)) ORDER BY s.setrole DESC, s.setdatabase DESC)
                FROM pg_catalog.pg_db_role_setting s CROSS JOIN LATERAL unnest(s.setconfig) AS c(entry)
               WHERE (s.setrole = 0 OR s.setrole = r.oid)
                 AND (s.setdatabase = 0 OR s.setdatabase = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = current_database()))
                 AND lower(c.entry) LIKE lower($2) || '=%'), '[]'::jsonb) AS setting_defaults
     FROM (SELECT 1) AS one LEFT JOIN pg_catalog.pg_roles r ON r.rolname = $1`,
    [role, setting],
  );
  const row = rows[0];
  return {
    currentUser: row.current_user,
    currentBypassesRls: row.current_bypasses === true,
    exists: row.exists,
    superuser: row.superuser,
    bypassrls: row.bypassrls,
    createrole: row.createrole,
    escalations: row.escalations,
    settingDefaults: row.setting_defaults,
  };
}

export interface TableRow {
  table: TenantTable;
  /** null when no table (relkind r or p) of that name exists. */
  relid: number | null;
  partitioned: boolean;
  rls: boolean;
  forced: boolean;
  owner: string | null;
  /** The runtime role owns the table, directly or through membership in the owner role. */
  runtimeOwns: boolean;
  /** The table's schema, when the runtime role owns it (or is a member of its owner, pg_database_owner included): it may DROP the table. */
  ownedSchema: string | null;
  hasColumn: boolean;
  columnType: string | null;
  notNull: boolean;
  /** Some index (or primary key) has the tenant column as its first column. */
  tenantIndex: boolean;
  /** Privileges the runtime role has or may SET ROLE to (own, a role's, PUBLIC's) that RLS does not govern: TRUNCATE, TRIGGER. */
  beyondRls: string[];
}

export async function readTables(db: Queryable, tables: readonly TenantTable[], runtimeRole: string): Promise<TableRow[]> {
  const { rows } = await db.query(
    `SELECT cfg.i::int AS i, c.oid AS relid, c.relkind::text AS relkind, c.relrowsecurity AS rls, c.relforcerowsecurity AS forced,
            pg_catalog.pg_get_userbyid(c.relowner)::text AS owner,
            CASE WHEN c.oid IS NOT NULL AND rt.oid IS NOT NULL AND NOT rt.rolsuper
                 THEN pg_catalog.pg_has_role(rt.oid, c.relowner, 'MEMBER') ELSE false END AS runtime_owns,
            CASE WHEN c.oid IS NOT NULL AND rt.oid IS NOT NULL AND NOT rt.rolsuper AND pg_catalog.pg_has_role(rt.oid, n.nspowner, 'MEMBER')
                 THEN n.nspname::text END AS owned_schema,
            a.attnum IS NOT NULL AS has_column, pg_catalog.format_type(a.atttypid, a.atttypmod) AS column_type,
            coalesce(a.attnotnull, false) AS not_null,
            EXISTS (SELECT 1 FROM pg_catalog.pg_index x WHERE x.indrelid = c.oid AND x.indkey[0] = a.attnum) AS tenant_index,
            -- The owner's own are LBMT_ROLE_OWNS_TABLE's; a superuser's LBMT_ROLE_SUPERUSER's.
            CASE WHEN c.oid IS NULL OR rt.oid IS NULL OR rt.rolsuper OR pg_catalog.pg_has_role(rt.oid, c.relowner, 'MEMBER') THEN '{}'::text[]
                 -- Also through a role it may SET ROLE to (a NOINHERIT membership keeps has_table_privilege from seeing it).
                 ELSE ARRAY(SELECT p FROM unnest(ARRAY['TRUNCATE', 'TRIGGER']) AS p
                             WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_roles m
                                            WHERE pg_catalog.pg_has_role(rt.oid, m.oid, 'MEMBER') AND pg_catalog.has_table_privilege(m.oid, c.oid, p))) END AS beyond_rls
     FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS cfg(schema_name, table_name, column_name, i)
     LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = cfg.schema_name
     LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = cfg.table_name AND c.relkind IN ('r', 'p')
     LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = cfg.column_name AND a.attnum > 0 AND NOT a.attisdropped
     LEFT JOIN pg_catalog.pg_roles rt ON rt.rolname = $4
     ORDER BY cfg.i`,
    [tables.map((t) => t.schema), tables.map((t) => t.table), tables.map((t) => t.tenantColumn), runtimeRole],
  );
  return rows.map((row) => ({
    table: tables[row.i - 1]!,
    relid: row.relid ?? null,
    partitioned: row.relkind === 'p',
    rls: row.rls === true,
    forced: row.forced === true,
    owner: row.owner,
    runtimeOwns: row.runtime_owns === true,
    ownedSchema: row.owned_schema ?? null,
    hasColumn: row.has_column,
    columnType: row.column_type,
    notNull: row.not_null,
    tenantIndex: row.tenant_index,
    beyondRls: row.beyond_rls ?? [],
  }));
}

export interface PartitionRow {
  /** The configured tenant table this partition (or inheritance child) descends from. */
  root: number;
  relid: number;
  schema: string;
  table: string;
  rls: boolean;
  forced: boolean;
  owner: string;
  /** The runtime role owns it, directly or through membership in its owner (it may disable RLS on it). */
  runtimeOwns: boolean;
}

export async function readPartitions(db: Queryable, relids: number[], runtimeRole: string): Promise<PartitionRow[]> {
  const { rows } = await db.query(
    `WITH RECURSIVE tree(relid, root) AS (
       SELECT inhrelid, inhparent FROM pg_catalog.pg_inherits WHERE inhparent = ANY($1::oid[])
       UNION
       SELECT i.inhrelid, t.root FROM pg_catalog.pg_inherits i JOIN tree t ON i.inhparent = t.relid)
     SELECT t.root, t.relid, n.nspname::text AS schema, c.relname::text AS table, c.relrowsecurity AS rls, c.relforcerowsecurity AS forced,
            pg_catalog.pg_get_userbyid(c.relowner)::text AS owner,
            coalesce(rt.oid IS NOT NULL AND NOT rt.rolsuper AND pg_catalog.pg_has_role(rt.oid, c.relowner, 'MEMBER'), false) AS runtime_owns
     FROM tree t JOIN pg_catalog.pg_class c ON c.oid = t.relid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     LEFT JOIN pg_catalog.pg_roles rt ON rt.rolname = $2
     ORDER BY 3, 4`,
    [relids, runtimeRole],
  );
  return rows.map((row) => ({ root: row.root, relid: row.relid, schema: row.schema, table: row.table, rls: row.rls, forced: row.forced, owner: row.owner, runtimeOwns: row.runtime_owns }));
}

export interface PolicyRow {
  relid: number;
  name: string;
  permissive: boolean;
  /** `*` (ALL), `r` (SELECT), `a` (INSERT), `w` (UPDATE), `d` (DELETE). */
  cmd: string;
  using: string | null;
  check: string | null;
  /**
   * The policy applies to the runtime role: TO PUBLIC, the role, or a role whose privileges it has
   * (pg_has_role USAGE). PostgreSQL applies a policy by has_privs_of_role (rowsecurity.c), so a
   * NOINHERIT membership does not bring a policy in: counting it would accept an isolation policy
   * that never applies.
   */
  applies: boolean;
}

export async function readPolicies(db: Queryable, relids: number[], runtimeRole: string): Promise<PolicyRow[]> {
  const { rows } = await db.query(
    `SELECT p.polrelid AS relid, p.polname::text AS name, p.polpermissive AS permissive, p.polcmd::text AS cmd,
            pg_catalog.pg_get_expr(p.polqual, p.polrelid) AS using,
            pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) AS check,
            (0::oid = ANY (p.polroles) OR (rt.oid IS NOT NULL AND EXISTS (
               SELECT 1 FROM unnest(p.polroles) AS r(oid) WHERE r.oid <> 0 AND pg_catalog.pg_has_role(rt.oid, r.oid, 'USAGE')))) AS applies
     FROM pg_catalog.pg_policy p LEFT JOIN pg_catalog.pg_roles rt ON rt.rolname = $2
     WHERE p.polrelid = ANY($1::oid[])
     ORDER BY p.polname`,
    [relids, runtimeRole],
  );
  return rows;
}

export interface DependentRow {
  schema: string;
  table: string;
  /** `v` view, `m` materialized view. */
  relkind: string;
  owner: string;
  securityInvoker: boolean;
  /** The tenant tables it reads, directly or through other views. */
  roots: number[];
}

/** Views and materialized views that read tenant tables, directly or through other views. */
export async function readDependents(db: Queryable, relids: number[]): Promise<DependentRow[]> {
  const { rows } = await db.query(
    `WITH RECURSIVE deps(relid, root) AS (
       SELECT r.ev_class, d.refobjid
       FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
       WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
         AND d.refobjid = ANY($1::oid[]) AND r.ev_class <> d.refobjid
       UNION
       SELECT r.ev_class, deps.root
       FROM deps JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = deps.relid
                                             AND d.classid = 'pg_catalog.pg_rewrite'::regclass
                 JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
       WHERE r.ev_class <> deps.relid)
     SELECT n.nspname::text AS schema, c.relname::text AS table, c.relkind::text AS relkind, pg_catalog.pg_get_userbyid(c.relowner)::text AS owner,
            EXISTS (SELECT 1 FROM pg_catalog.pg_options_to_table(c.reloptions) o
                    WHERE o.option_name = 'security_invoker' AND o.option_value::boolean) AS security_invoker,
            array_agg(DISTINCT deps.root::int) AS roots
     FROM deps JOIN pg_catalog.pg_class c ON c.oid = deps.relid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('v', 'm')
     GROUP BY 1, 2, 3, 4, 5
     ORDER BY 1, 2`,
    [relids],
  );
  return rows.map((row) => ({ schema: row.schema, table: row.table, relkind: row.relkind, owner: row.owner, securityInvoker: row.security_invoker, roots: row.roots }));
}

export interface RuleRow {
  schema: string;
  table: string;
  rule: string;
  owner: string;
  /** The owner of the rule's relation is a superuser or has BYPASSRLS. */
  ownerBypassesRls: boolean;
  /** The rule is on a tenant table itself (it sees every tenant's writes). */
  onTenantTable: boolean;
  /** The tenant tables it is on or whose rows its actions use. */
  roots: number[];
}

/**
 * Rules (CREATE RULE, not a view's _RETURN) on a tenant table or whose actions use one. A rule's
 * actions run with the rights of its relation's owner, not of the querying role.
 */
export async function readRules(db: Queryable, relids: number[]): Promise<RuleRow[]> {
  const { rows } = await db.query(
    `SELECT n.nspname::text AS schema, c.relname::text AS table, r.rulename::text AS rule, o.rolname::text AS owner,
            (o.rolsuper OR o.rolbypassrls) AS owner_bypasses, r.ev_class = ANY($1::oid[]) AS on_tenant_table,
            array_agg(DISTINCT d.refobjid::int) AS roots
     FROM pg_catalog.pg_rewrite r
     JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid
                                AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = ANY($1::oid[])
     JOIN pg_catalog.pg_class c ON c.oid = r.ev_class JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     JOIN pg_catalog.pg_roles o ON o.oid = c.relowner
     WHERE r.rulename <> '_RETURN'
     GROUP BY 1, 2, 3, 4, 5, 6
     ORDER BY 1, 2, 3`,
    [relids],
  );
  return rows.map((row) => ({ schema: row.schema, table: row.table, rule: row.rule, owner: row.owner, ownerBypassesRls: row.owner_bypasses, onTenantTable: row.on_tenant_table, roots: row.roots }));
}

export interface DefinerFunctionRow {
  /** `schema.name(argument types)`, identifiers quoted where needed: usable in ALTER FUNCTION. */
  signature: string;
  body: string;
  /** `SET search_path = ...` is part of the function's definition. */
  pinnedSearchPath: boolean;
  owner: string;
  /** Its owner is a superuser or has BYPASSRLS: no policy limits what it reads or writes. */
  ownerBypassesRls: boolean;
  /** The runtime role may call it. */
  callable: boolean;
}

/** SECURITY DEFINER functions and procedures outside the system schemas. */
export async function readDefinerFunctions(db: Queryable, runtimeRole: string): Promise<DefinerFunctionRow[]> {
  const { rows } = await db.query(
    `SELECT quote_ident(n.nspname) || '.' || quote_ident(p.proname) || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')' AS signature,
            -- prosrc is the body as written; it is empty for SQL-standard bodies (BEGIN ATOMIC, PG14+),
            -- which only pg_get_functiondef prints.
            CASE WHEN p.prosrc <> '' OR p.prokind NOT IN ('f', 'p') THEN p.prosrc ELSE pg_catalog.pg_get_functiondef(p.oid) END AS body,
            EXISTS (SELECT 1 FROM unnest(p.proconfig) AS s(setting) WHERE s.setting LIKE 'search\\_path=%') AS pinned,
            o.rolname::text AS owner, (o.rolsuper OR o.rolbypassrls) AS owner_bypasses,
            coalesce(rt.oid IS NOT NULL AND pg_catalog.has_function_privilege(rt.oid, p.oid, 'EXECUTE'), false) AS callable
     FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
     JOIN pg_catalog.pg_roles o ON o.oid = p.proowner LEFT JOIN pg_catalog.pg_roles rt ON rt.rolname = $1
     WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')
     ORDER BY 1`,
    [runtimeRole],
  );
  return rows.map((row) => ({
    signature: row.signature,
    body: row.body ?? '',
    pinnedSearchPath: row.pinned,
    owner: row.owner,
    ownerBypassesRls: row.owner_bypasses,
    callable: row.callable,
  }));
}

/** Functions and procedures outside the system schemas whose body names the tenant setting. */
export async function readFunctionsNamingSetting(db: Queryable, setting: string): Promise<Array<{ signature: string; body: string }>> {
  const { rows } = await db.query(
    `SELECT quote_ident(n.nspname) || '.' || quote_ident(p.proname) || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')' AS signature,
            CASE WHEN p.prosrc <> '' OR p.prokind NOT IN ('f', 'p') THEN p.prosrc ELSE pg_catalog.pg_get_functiondef(p.oid) END AS body
     FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND p.prokind IN ('f', 'p')
       AND strpos(lower(CASE WHEN p.prosrc <> '' THEN p.prosrc ELSE pg_catalog.pg_get_functiondef(p.oid) END), lower($1)) > 0
     ORDER BY 1`,
    [setting],
  );
  return rows.map((row) => ({ signature: row.signature, body: row.body ?? '' }));
}

export interface UniqueIndexRow {
  relid: number;
  name: string;
  /** Key columns (INCLUDE columns and expressions left out). */
  columns: string[];
  /** Name of the PRIMARY KEY / UNIQUE constraint the index backs, if any. */
  constraint: string | null;
  /** `p` primary key, `u` unique constraint, null for a plain unique index. */
  constraintType: string | null;
}

export async function readUniqueIndexes(db: Queryable, relids: number[]): Promise<UniqueIndexRow[]> {
  const { rows } = await db.query(
    `SELECT x.indrelid AS relid, ic.relname::text AS name, con.conname::text AS constraint, con.contype::text AS constraint_type,
            ARRAY(SELECT a.attname::text FROM generate_series(0, x.indnkeyatts - 1) AS k(n)
                  JOIN pg_catalog.pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[k.n]
                  ORDER BY k.n) AS columns
     FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid
     LEFT JOIN pg_catalog.pg_constraint con ON con.conindid = x.indexrelid AND con.conrelid = x.indrelid AND con.contype IN ('p', 'u')
     WHERE x.indisunique AND x.indrelid = ANY($1::oid[])
     ORDER BY 2`,
    [relids],
  );
  return rows.map((row) => ({ relid: row.relid, name: row.name, columns: row.columns, constraint: row.constraint, constraintType: row.constraint_type }));
}

export interface ForeignKeyRow {
  name: string;
  fromRelid: number;
  fromTable: string;
  columns: string[];
  toRelid: number;
  toTable: string;
  refColumns: string[];
}

/** Foreign keys from or to the given tables (not the copies PostgreSQL makes on partitions). */
export async function readForeignKeys(db: Queryable, relids: number[]): Promise<ForeignKeyRow[]> {
  const columns = (key: string, rel: string) =>
    `ARRAY(SELECT a.attname::text FROM unnest(con.${key}) WITH ORDINALITY AS k(attnum, ord)
           JOIN pg_catalog.pg_attribute a ON a.attrelid = con.${rel} AND a.attnum = k.attnum ORDER BY k.ord)`;
  const qualified = (rel: string) =>
    `(SELECT n.nspname || '.' || c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = con.${rel})`;
  const { rows } = await db.query(
    `SELECT con.conname::text AS name, con.conrelid AS from_relid, ${qualified('conrelid')} AS from_table,
            ${columns('conkey', 'conrelid')} AS columns,
            con.confrelid AS to_relid, ${qualified('confrelid')} AS to_table,
            ${columns('confkey', 'confrelid')} AS ref_columns
     FROM pg_catalog.pg_constraint con
     WHERE con.contype = 'f' AND con.conparentid = 0 AND (con.conrelid = ANY($1::oid[]) OR con.confrelid = ANY($1::oid[]))
     ORDER BY 1`,
    [relids],
  );
  return rows.map((row) => ({
    name: row.name,
    fromRelid: row.from_relid,
    fromTable: row.from_table,
    columns: row.columns,
    toRelid: row.to_relid,
    toTable: row.to_table,
    refColumns: row.ref_columns,
  }));
}
