import { DEFAULT_TENANCY, type TenancyConfig } from '../config.js';

/** A table (or view, materialized view, foreign table) whose references the guard checks. */
export interface GuardedTable {
  readonly schema: string;
  readonly table: string;
  readonly tenantColumn: string;
  /**
   * 1-based position of the tenant column among the table's columns, for `INSERT` without a column
   * list and for column aliases (`FROM orders AS o(a, b, c)`). Undefined when unknown.
   */
  readonly position: number | undefined;
  /** true when RLS protects the table too (guarded only because `guardRlsTables` is on). */
  readonly rls: boolean;
}

/**
 * A relation that reads a guarded table but has no tenant column of its own, so nothing can
 * filter it: a view (or materialized view) over a guarded table, refused wherever it is named; or
 * (`kind: 'parent'`) an inheritance parent of a table carrying the tenant column, whose scans read
 * the children's rows too (refused unless named with `ONLY`; the parent's own RLS, if any, is
 * all that applies to them).
 */
export interface BlindView {
  readonly schema: string;
  readonly table: string;
  /** One guarded table it reads (`schema.table`). */
  readonly reads: string;
  /** `'parent'` for an inheritance parent; absent for a view. */
  readonly kind?: 'parent';
}

/** What the guard knows about the database: the guarded tables and how unqualified names resolve. */
export interface GuardCatalog {
  /** `schema.table` → guarded table. */
  readonly tables: ReadonlyMap<string, GuardedTable>;
  /** Unqualified name → the guarded table it resolves to through the search path. */
  readonly unqualified: ReadonlyMap<string, GuardedTable>;
  /** `schema.view` → view over guarded tables without a tenant column. */
  readonly blindViews: ReadonlyMap<string, BlindView>;
  readonly unqualifiedBlind: ReadonlyMap<string, BlindView>;
  /** The connecting role's `current_schemas(true)`. */
  readonly searchPath: readonly string[];
  /**
   * Why the sessions of the pool read statement text differently from the guard's parser
   * (standard_conforming_strings off, a client_encoding other than UTF8, as set for the role or
   * database): every statement is then refused. Undefined when they read it alike.
   */
  readonly lexingMismatch?: string;
}

export interface CatalogOptions {
  readonly tenancy?: TenancyConfig;
  /** Tables never guarded: `schema.table`, or `table` for `public.table`. */
  readonly exemptTables?: Iterable<string>;
  /** Guard tables that RLS protects too (defence in depth). Default false. */
  readonly guardRlsTables?: boolean;
}

export interface CatalogQueryable {
  query(text: string, values?: unknown[]): Promise<{ rows: any[] }>;
}

// Relations a FROM clause can name and that can carry a tenant column: tables, partitioned tables,
// views, materialized views, foreign tables. Views never have RLS of their own, so they are guarded
// whenever they expose the tenant column (a view runs with its owner's rights unless
// security_invoker; a materialized view ignores RLS).
const CANDIDATES_SQL = `
SELECT n.nspname AS schema, c.relname AS table, a.attname AS column,
       (SELECT count(*)::int FROM pg_attribute b
         WHERE b.attrelid = c.oid AND b.attnum > 0 AND NOT b.attisdropped AND b.attnum <= a.attnum) AS position,
       c.relrowsecurity AND c.relforcerowsecurity AND EXISTS (
         SELECT 1 FROM pg_policy p
          WHERE p.polrelid = c.oid AND NOT p.polpermissive AND p.polcmd = '*'
            AND strpos(coalesce(pg_get_expr(p.polqual, p.polrelid), ''), $2) > 0
            AND strpos(coalesce(pg_get_expr(p.polwithcheck, p.polrelid), pg_get_expr(p.polqual, p.polrelid), ''), $2) > 0
       ) AS protected
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND a.attname = ANY($1::text[])
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\\_toast%'`;

// The connecting role's search path, and whether RLS applies to it at all.
// And how its sessions lex statements: the guard's parser assumes standard_conforming_strings on
// and UTF-8 text.
const ROLE_SQL = `
SELECT current_schemas(true) AS path,
       coalesce((SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user), false) AS bypass,
       current_setting('standard_conforming_strings') AS scs, current_setting('client_encoding') AS encoding`;

// Every relation on the search path named like a guarded table: the first one in path order is
// what an unqualified name means to PostgreSQL.
const SHADOW_SQL = `
SELECT n.nspname AS schema, c.relname AS name
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY($1::text[]) AND c.relname = ANY($2::text[]) AND c.relkind NOT IN ('i', 'I', 'c', 't')`;

// Inheritance ancestors of the tables carrying a tenant column ($1 tables, $2 their tenant columns)
// that do not carry that column themselves: scanning such a parent scans the children's rows too,
// filtered by the parent's policies only (a child's RLS does not apply through its parent).
const PARENTS_SQL = `
WITH RECURSIVE tenant_tables(key, col) AS (SELECT * FROM unnest($1::text[], $2::text[])),
ancestors AS (
  SELECT i.inhparent AS parent, i.inhrelid AS child FROM pg_inherits i
  UNION
  SELECT i.inhparent, a.child FROM ancestors a JOIN pg_inherits i ON i.inhrelid = a.parent
)
SELECT DISTINCT pn.nspname AS schema, p.relname AS table, t.key AS reads
  FROM ancestors a
  JOIN pg_class c ON c.oid = a.child JOIN pg_namespace cn ON cn.oid = c.relnamespace
  JOIN tenant_tables t ON t.key = cn.nspname || '.' || c.relname
  JOIN pg_class p ON p.oid = a.parent JOIN pg_namespace pn ON pn.oid = p.relnamespace
 WHERE NOT EXISTS (SELECT 1 FROM pg_attribute x
                    WHERE x.attrelid = p.oid AND x.attname = t.col AND x.attnum > 0 AND NOT x.attisdropped)
 ORDER BY 1, 2, 3`;

// Views and materialized views and the relations their rules read, followed through views of
// views: what a view exposes of a guarded table.
const VIEWS_SQL = `
WITH RECURSIVE reads AS (
  SELECT DISTINCT r.ev_class AS view, d.refobjid AS rel
    FROM pg_rewrite r
    JOIN pg_class v ON v.oid = r.ev_class AND v.relkind IN ('v', 'm')
    JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                    AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> r.ev_class
), closure AS (
  SELECT view, rel FROM reads
  UNION
  SELECT c.view, r.rel FROM closure c JOIN reads r ON r.view = c.rel
)
SELECT vn.nspname AS schema, v.relname AS table, tn.nspname || '.' || t.relname AS reads
  FROM closure c
  JOIN pg_class v ON v.oid = c.view JOIN pg_namespace vn ON vn.oid = v.relnamespace
  JOIN pg_class t ON t.oid = c.rel JOIN pg_namespace tn ON tn.oid = t.relnamespace
 WHERE tn.nspname || '.' || t.relname = ANY($1::text[])
 ORDER BY 1, 2, 3`;

/**
 * Reads the guarded tables from pg_catalog, as the role of `db` sees them: tables carrying the
 * tenant column (the config's `tenantColumn`, or a table's own `tenantColumn` in `tables`) that RLS
 * does not protect (protected = ENABLE + FORCE ROW LEVEL SECURITY + a restrictive policy for all
 * commands that reads the tenant setting, and a role without BYPASSRLS), minus `exemptTables`;
 * and the views that read them without exposing a tenant column (blind views).
 */
export async function readGuardCatalog(db: CatalogQueryable, options: CatalogOptions = {}): Promise<GuardCatalog> {
  const tenancy = options.tenancy ?? DEFAULT_TENANCY;
  const configured = new Map(tenancy.tables.map((t) => [`${t.schema}.${t.table}`, t.tenantColumn]));
  const columns = [...new Set([tenancy.tenantColumn, ...configured.values()])];
  const role = (await db.query(ROLE_SQL)).rows[0] as { path: string[] | string; bypass: boolean; scs: string; encoding: string };
  const searchPath = typeof role.path === 'string' ? parsePgArray(role.path) : role.path;
  const { rows } = await db.query(CANDIDATES_SQL, [columns, tenancy.setting]);
  const exempt = exemptKeys(options.exemptTables);
  const tables: GuardedTable[] = [];
  const tenantTables = new Map<string, string>();
  for (const row of rows as Array<{ schema: string; table: string; column: string; position: number; protected: boolean }>) {
    const key = `${row.schema}.${row.table}`;
    if ((configured.get(key) ?? tenancy.tenantColumn) !== row.column || exempt.has(key)) continue;
    tenantTables.set(key, row.column);
    const rls = row.protected && !role.bypass;
    if (rls && !options.guardRlsTables) continue;
    tables.push({ schema: row.schema, table: row.table, tenantColumn: row.column, position: row.position, rls });
  }
  const blind = new Map<string, BlindView>();
  if (tenantTables.size > 0) {
    const parents = await db.query(PARENTS_SQL, [[...tenantTables.keys()], [...tenantTables.values()]]);
    for (const row of parents.rows as BlindView[]) {
      const key = `${row.schema}.${row.table}`;
      if (!exempt.has(key) && !blind.has(key)) blind.set(key, { schema: row.schema, table: row.table, reads: row.reads, kind: 'parent' });
    }
  }
  const keys = new Set([...tables.map((t) => `${t.schema}.${t.table}`), ...blind.keys()]);
  if (keys.size > 0) {
    for (const row of (await db.query(VIEWS_SQL, [[...keys]])).rows as BlindView[]) {
      const key = `${row.schema}.${row.table}`;
      if (!keys.has(key) && !exempt.has(key) && !blind.has(key)) blind.set(key, { schema: row.schema, table: row.table, reads: row.reads });
    }
  }
  const names = [...new Set([...tables, ...blind.values()].map((t) => t.table))];
  const shadows = names.length === 0 ? [] : (await db.query(SHADOW_SQL, [searchPath, names])).rows;
  const catalog = buildCatalog(tables, [...blind.values()], searchPath, shadows as Array<{ schema: string; name: string }>);
  const mismatch = lexingMismatch(role.scs, role.encoding);
  return mismatch === undefined ? catalog : Object.freeze({ ...catalog, lexingMismatch: mismatch });
}

function lexingMismatch(scs: string, encoding: string): string | undefined {
  if (scs !== 'on') return `the pool's sessions run with standard_conforming_strings = ${scs}: backslashes in strings are read differently from the guard's parser`;
  if (encoding.toUpperCase() !== 'UTF8') return `the pool's sessions run with client_encoding = ${encoding}: multi-byte characters are read differently from the guard's parser (UTF-8)`;
  return undefined;
}

export interface StaticTableInput {
  /** `schema.table`, or `table` for `public.table`; exact (case-sensitive) names as in pg_catalog. */
  readonly name: string;
  /** Default: the tenancy's `tenantColumn`. */
  readonly tenantColumn?: string;
  /** 1-based position of the tenant column; needed for INSERT without a column list. */
  readonly position?: number;
}

/**
 * A catalog given by hand, for tests and for applications that cannot read pg_catalog at start-up.
 * Unqualified names resolve through `searchPath` (default `['pg_catalog', 'public']`) among the
 * given tables only.
 */
export function staticGuardCatalog(
  tables: readonly StaticTableInput[],
  options: { tenancy?: TenancyConfig; searchPath?: readonly string[] } = {},
): GuardCatalog {
  const tenancy = options.tenancy ?? DEFAULT_TENANCY;
  const list = tables.map((input): GuardedTable => {
    const dot = input.name.indexOf('.');
    const schema = dot < 0 ? 'public' : input.name.slice(0, dot);
    const table = dot < 0 ? input.name : input.name.slice(dot + 1);
    return { schema, table, tenantColumn: input.tenantColumn ?? tenancy.tenantColumn, position: input.position, rls: false };
  });
  const searchPath = options.searchPath ?? ['pg_catalog', 'public'];
  return buildCatalog(list, [], searchPath, list.map((t) => ({ schema: t.schema, name: t.table })));
}

function buildCatalog(
  tables: readonly GuardedTable[],
  views: readonly BlindView[],
  searchPath: readonly string[],
  relations: ReadonlyArray<{ schema: string; name: string }>,
): GuardCatalog {
  const byKey = new Map(tables.map((t) => [`${t.schema}.${t.table}`, t]));
  const blindViews = new Map(views.map((v) => [`${v.schema}.${v.table}`, v]));
  const unqualified = new Map<string, GuardedTable>();
  const unqualifiedBlind = new Map<string, BlindView>();
  const rank = new Map(searchPath.map((schema, i) => [schema, i]));
  const first = new Map<string, string>();
  for (const { schema, name } of relations) {
    const r = rank.get(schema);
    if (r === undefined) continue;
    const current = first.get(name);
    if (current === undefined || r < rank.get(current)!) first.set(name, schema);
  }
  for (const [name, schema] of first) {
    const table = byKey.get(`${schema}.${name}`);
    if (table) unqualified.set(name, table);
    const view = blindViews.get(`${schema}.${name}`);
    if (view) unqualifiedBlind.set(name, view);
  }
  return Object.freeze({ tables: byKey, unqualified, blindViews, unqualifiedBlind, searchPath: Object.freeze([...searchPath]) });
}

function exemptKeys(input: Iterable<string> | undefined): Set<string> {
  const keys = new Set<string>();
  for (const name of input ?? []) {
    if (typeof name !== 'string' || name.length === 0) throw new TypeError('`exemptTables` must list table names');
    keys.add(name.includes('.') ? name : `public.${name}`);
  }
  return keys;
}

function parsePgArray(text: string): string[] {
  const inner = text.replace(/^\{|\}$/g, '');
  return inner.length === 0 ? [] : inner.split(',').map((s) => s.replace(/^"|"$/g, ''));
}

/** The guarded table a relation name means: schema-qualified, or through the search path. */
export function lookupGuarded(catalog: GuardCatalog, schema: string | undefined, name: string): GuardedTable | undefined {
  return schema === undefined ? catalog.unqualified.get(name) : catalog.tables.get(`${schema}.${name}`);
}

/** The blind view a relation name means, if any. */
export function lookupBlind(catalog: GuardCatalog, schema: string | undefined, name: string): BlindView | undefined {
  return schema === undefined ? catalog.unqualifiedBlind.get(name) : catalog.blindViews.get(`${schema}.${name}`);
}

/** `schema.table` of a guarded table. */
export function tableName(table: GuardedTable): string {
  return `${table.schema}.${table.table}`;
}
