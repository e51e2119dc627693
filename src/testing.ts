/**
 * `linkbay-multitenant/testing`: proves on a real database, for your own schema, that one tenant
 * can neither see nor write another tenant's rows. Run it in CI after your migrations, with rows
 * for two tenants in the tenant tables.
 *
 * Every write it tries runs inside a transaction (and a savepoint) that is always rolled back, so
 * the check leaves your data as it found it. Two side effects remain, as with any rolled-back
 * write: identity/serial sequences advance, and volatile side effects of your triggers (anything
 * outside the database) happen. Call it outside any tenant transaction: inside one it would join
 * it (its savepoints still undo every probe) and fail with TenantMismatchError for the other tenant.
 */
import { qualifiedName, quoteIdent, quoteLiteral, type TenancyConfig, type TenantTable } from './config.js';
import { IsolationBreachError } from './errors.js';
import { canonicalTenantId } from './tenant-id.js';
import { withTenantTransaction, type TenantPool } from './transaction.js';

/** What the check needs of the admin pool; a `pg.Pool` fits. */
export interface AdminQueryable {
  query(text: string, values?: unknown[]): Promise<{ rows: any[] }>;
}

export interface IsolationCheckOptions {
  /** The runtime role's pool (no BYPASSRLS, owns no tenant table): the one your application uses. */
  readonly appPool: TenantPool;
  /** A role that sees every row (BYPASSRLS or superuser). Only reads, to learn the truth the app role's view is compared with. */
  readonly adminPool: AdminQueryable;
  readonly config: TenancyConfig;
  /** Two different tenants. Write probes need a row of each to copy; without one they are skipped (see `notes`). */
  readonly tenants: readonly [string, string];
  /** Tables to check, as `table` (schema public) or `schema.table`, each one of `config.tables`. Default: all of them. */
  readonly tables?: readonly string[];
}

export interface TableIsolationResult {
  /** `schema.table`. */
  readonly table: string;
  readonly tenantColumn: string;
  /** Primary key columns, which identify rows in comparisons and messages. Empty: whole rows are compared and never printed. */
  readonly identityColumns: readonly string[];
  readonly visibleUnderA: number;
  readonly expectedForA: number;
  readonly visibleUnderB: number;
  readonly expectedForB: number;
  /** Rows the app role sees in a transaction that set no tenant (0 also when the SELECT failed: see `breaches`). */
  readonly visibleWithoutTenant: number;
  /** Rows the app role sees in a transaction where the tenant setting is `''` (0 also when the SELECT failed). */
  readonly visibleWithEmptyTenant: number;
  /** What could not be probed and why, e.g. write probes skipped for lack of a sample row. */
  readonly notes: readonly string[];
  /** Each breach found in this table, prefixed with the table name. */
  readonly breaches: readonly string[];
}

export interface IsolationReport {
  /** True when no breach was found. */
  readonly ok: boolean;
  /** The two tenant ids, canonical: A then B. */
  readonly tenants: readonly [string, string];
  readonly tables: readonly TableIsolationResult[];
  /** Every breach: the app role's own (superuser, BYPASSRLS) and each table's. */
  readonly breaches: readonly string[];
  readonly notes: readonly string[];
}

/**
 * Checks tenant isolation (see `checkTenantIsolation`) and throws IsolationBreachError, with the
 * report in `error.report`, when anything breaks it. Breach messages name tables, tenant ids and
 * primary key values, never other columns.
 *
 * @example
 * // in your CI, after migrating and seeding two tenants:
 * await assertTenantIsolation({ appPool, adminPool, config: tenancy, tenants: [acmeId, globexId] });
 */
export async function assertTenantIsolation(options: IsolationCheckOptions): Promise<IsolationReport> {
  const report = await checkTenantIsolation(options);
  if (!report.ok) {
    const shown = report.breaches.slice(0, 20).map((breach) => `\n- ${breach}`).join('');
    const more = report.breaches.length > 20 ? `\n... and ${report.breaches.length - 20} more (see error.report)` : '';
    throw new IsolationBreachError(`tenant isolation is breached (${report.breaches.length} finding(s)):${shown}${more}`, report);
  }
  return report;
}

/**
 * For each tenant table, and for tenant A then tenant B as the current tenant, checks as the app role:
 * 1. the rows visible are exactly the rows the admin role sees with the tenant column = the tenant,
 *    compared by primary key (else by whole row) through an order-free fingerprint, then row by row
 *    when it differs; and none has another tenant;
 * 2. moving one of its rows to the other tenant (UPDATE ... WHERE CURRENT OF) is refused or affects
 *    nothing; inserting a copy of one of its rows for the other tenant is refused by RLS (42501); an
 *    UPDATE without WHERE reaches no more rows than the tenant has; UPDATE and DELETE of a row of
 *    the other tenant affect nothing;
 * 3. with no tenant set, and with the setting `''`, nothing is visible and INSERT is refused (42501).
 * Throws on bad options and when `adminPool` does not bypass RLS; never for a breach (see
 * `assertTenantIsolation`). Run it while nothing else writes the tables: concurrent writes look
 * like breaches.
 */
export async function checkTenantIsolation(options: IsolationCheckOptions): Promise<IsolationReport> {
  const { appPool, adminPool, config } = options;
  const tenants = parseTenants(options);
  const tables = selectTables(config, options.tables);
  const admin = await adminPool.query(`SELECT r.rolsuper OR r.rolbypassrls AS bypass FROM pg_catalog.pg_roles r WHERE r.rolname = current_user`);
  if (admin.rows[0]?.bypass !== true) {
    throw new TypeError('`adminPool` must connect as a role that bypasses row level security (BYPASSRLS or superuser): it reads the truth the app role is compared with');
  }
  // Row identities are compared as text, so the app side formats values as the admin side does.
  const { rows } = await adminPool.query(
    `SELECT ${FORMAT_SETTINGS.map((name, i) => `current_setting(${quoteLiteral(name)}) AS s${i}`).join(', ')}`,
  );
  const ctx: Context = { appPool, adminPool, config, tenants, formatting: FORMAT_SETTINGS.map((_, i) => String(rows[0][`s${i}`])) };
  const roleBreaches = await appRoleBreaches(appPool);
  const results: TableIsolationResult[] = [];
  for (const table of tables) results.push(await checkTable(ctx, table));
  const breaches = [...roleBreaches, ...results.flatMap((result) => result.breaches)];
  return { ok: breaches.length === 0, tenants, tables: results, breaches, notes: results.flatMap((result) => result.notes) };
}

interface Context {
  readonly appPool: TenantPool;
  readonly adminPool: AdminQueryable;
  readonly config: TenancyConfig;
  readonly tenants: readonly [string, string];
  readonly formatting: readonly string[];
}

/** Settings that change how values print as text (and parse back). */
const FORMAT_SETTINGS = ['TimeZone', 'DateStyle', 'IntervalStyle', 'extra_float_digits', 'bytea_output'];
const SET_FORMATTING = `SELECT ${FORMAT_SETTINGS.map((name, i) => `set_config(${quoteLiteral(name)}, $${i + 1}, true)`).join(', ')}`;
/** A multiset fingerprint of row identities: order-free, and it changes when any identity does. */
const FINGERPRINT = (identity: string) => `coalesce(sum(hashtextextended(${identity}, 0)), 0)::text`;
const EXAMPLES = 5;

interface TableShape {
  readonly name: string;
  readonly sql: string;
  readonly column: string;
  readonly tenantColumn: string;
  readonly key: readonly string[];
  readonly insertable: readonly string[];
}

interface Truth {
  readonly count: number;
  readonly fingerprint: string;
  /** One row of the tenant: its identity values as text and the whole row as jsonb text (kept in memory, never printed). */
  readonly sample?: { readonly key: readonly string[]; readonly row: string };
}

/** A probe's outcome: its result, or the SQLSTATE and message it failed with. */
type Outcome = { readonly rowCount: number; readonly rows: any[] } | { readonly sqlState: string; readonly message: string };

/** Where a check writes what it found. */
interface Findings {
  readonly notes: string[];
  readonly breaches: string[];
}

interface QueryOutput {
  readonly rows: any[];
  readonly rowCount: number | null;
}

interface Queryable {
  query(text: string, values?: unknown[]): Promise<QueryOutput>;
}

async function checkTable(ctx: Context, table: TenantTable): Promise<TableIsolationResult> {
  const result = {
    table: `${table.schema}.${table.table}`,
    tenantColumn: table.tenantColumn,
    identityColumns: [] as string[],
    visibleUnderA: 0,
    expectedForA: 0,
    visibleUnderB: 0,
    expectedForB: 0,
    visibleWithoutTenant: 0,
    visibleWithEmptyTenant: 0,
    notes: [] as string[],
    breaches: [] as string[],
  };
  const shape = await readShape(ctx.adminPool, table);
  if (typeof shape === 'string') {
    result.breaches.push(`${result.table}: ${shape}`);
    return result;
  }
  result.identityColumns = [...shape.key];
  const [a, b] = ctx.tenants;
  const truthA = await readTruth(ctx.adminPool, shape, a);
  const truthB = await readTruth(ctx.adminPool, shape, b);
  result.expectedForA = truthA.count;
  result.expectedForB = truthB.count;
  const as = (tenant: string) => `${shape.name}: as tenant ${tenant},`;
  result.visibleUnderA = await checkAsTenant(ctx, shape, { self: a, other: b, truth: truthA, otherTruth: truthB, as: as(a) }, result);
  result.visibleUnderB = await checkAsTenant(ctx, shape, { self: b, other: a, truth: truthB, otherTruth: truthA, as: as(b) }, result);
  const sample = truthA.sample ?? truthB.sample;
  result.visibleWithoutTenant = await checkWithoutTenant(ctx, shape, { as: `${shape.name}: with no tenant set,`, sample }, result);
  result.visibleWithEmptyTenant = await checkWithoutTenant(ctx, shape, { as: `${shape.name}: with the tenant setting '',`, sample, setting: '' }, result);
  return result;
}

/** As tenant `self`: visibility against the truth, then the write probes. Returns the visible row count. */
async function checkAsTenant(ctx: Context, shape: TableShape, p: Probing, result: Findings): Promise<number> {
  const { self, truth, as } = p;
  return inRolledBackTenantTransaction(ctx, self, async (tx) => {
    const seen = await tx.query(
      `SELECT count(*)::text AS n, ${FINGERPRINT(identity(shape))} AS fingerprint,
              count(*) FILTER (WHERE lbmt_row.${shape.column} IS DISTINCT FROM $1)::text AS other_tenant
       FROM ${shape.sql} AS lbmt_row`,
      [self],
    );
    const visible = Number(seen.rows[0].n);
    if (visible !== truth.count || seen.rows[0].fingerprint !== truth.fingerprint || seen.rows[0].other_tenant !== '0') {
      result.breaches.push(...(await visibilityBreaches(ctx, tx, shape, self, as)));
    }

    await writeProbes(tx, shape, p, result);
    return visible;
  });
}

interface Probing {
  readonly self: string;
  readonly other: string;
  readonly truth: Truth;
  readonly otherTruth: Truth;
  /** Message prefix: `schema.table: as tenant <id>,`. */
  readonly as: string;
}

/** As tenant `self`: writing rows of `other`, or moving rows to it, is refused or reaches nothing. */
async function writeProbes(tx: Queryable, shape: TableShape, p: Probing, result: Findings): Promise<void> {
  const { self, other, as } = p;
  const sample = p.truth.sample;
  if (!sample) {
    result.notes.push(`${as} write probes skipped: the tenant has no row in the table to copy`);
  } else if (!shape.insertable.includes(shape.tenantColumn)) {
    result.notes.push(`${as} write probes skipped: the tenant column is not writable`);
  } else {
    // An UPDATE whose WHERE reads columns also checks the new row against the SELECT policies, which
    // would hide a WITH CHECK (true). WHERE CURRENT OF reads none: only WITH CHECK judges the new row.
    const move = await probe(tx, async () => {
      await tx.query(`DECLARE lbmt_probe_cursor CURSOR FOR SELECT FROM ${shape.sql} AS lbmt_row WHERE ${keyMatch(shape, 1)} FOR UPDATE`, [...sample.key]);
      const fetched = await tx.query('FETCH lbmt_probe_cursor');
      if (fetched.rowCount === 0) return fetched; // not visible: nothing to move (the visibility check says why)
      return tx.query(`UPDATE ${shape.sql} SET ${shape.column} = $1 WHERE CURRENT OF lbmt_probe_cursor`, [other]);
    });
    if (!refused(move) && !affected(move, 0)) {
      result.breaches.push(`${as} UPDATE moving one of its rows to tenant ${other} ${describe(move)}; expected 0 rows or a row level security refusal (42501)`);
    }
    const insert = await probe(tx, insertCopy(shape), [sample.row, shape.tenantColumn, other]);
    if (!refused(insert)) {
      result.breaches.push(`${as} INSERT of a row for tenant ${other} ${describe(insert)}; expected a row level security refusal (42501)`);
    }
  }

  // A forgotten WHERE: an UPDATE reading no column is judged by the UPDATE policies alone, not the
  // SELECT ones. Setting the tenant column to the current tenant leaves the tenant's own rows as they are.
  const everything = await probe(tx, `UPDATE ${shape.sql} SET ${shape.column} = $1`, [self]);
  if ('rowCount' in everything && everything.rowCount > p.truth.count) {
    result.breaches.push(`${as} UPDATE without WHERE reached ${everything.rowCount} row(s), the tenant has ${p.truth.count}`);
  } else if ('sqlState' in everything && !refused(everything)) {
    result.notes.push(`${as} the UPDATE-without-WHERE probe was inconclusive: it ${describe(everything)}`);
  }

  const otherSample = p.otherTruth.sample;
  if (!otherSample) {
    result.notes.push(`${as} UPDATE/DELETE probes of tenant ${other}'s rows skipped: tenant ${other} has no row in the table`);
    return;
  }
  const key = [...otherSample.key];
  const update = await probe(tx, `UPDATE ${shape.sql} AS lbmt_row SET ${shape.column} = lbmt_row.${shape.column} WHERE ${keyMatch(shape, 1)}`, key);
  if (!affected(update, 0)) result.breaches.push(`${as} UPDATE of a row of tenant ${other} ${describe(update)}; expected 0 rows`);
  const remove = await probe(tx, `DELETE FROM ${shape.sql} AS lbmt_row WHERE ${keyMatch(shape, 1)}`, key);
  if (!affected(remove, 0)) result.breaches.push(`${as} DELETE of a row of tenant ${other} ${describe(remove)}; expected 0 rows`);
}

/** The visible rows differ from the truth: name the difference by identity. */
async function visibilityBreaches(ctx: Context, tx: Queryable, shape: TableShape, self: string, as: string): Promise<string[]> {
  const seen = await tx.query(`SELECT ${identity(shape)} AS id, lbmt_row.${shape.column} IS DISTINCT FROM $1 AS other_tenant FROM ${shape.sql} AS lbmt_row`, [self]);
  const truth = await ctx.adminPool.query(`SELECT ${identity(shape)} AS id FROM ${shape.sql} AS lbmt_row WHERE lbmt_row.${shape.column} = $1`, [self]);
  const expected = new Map<string, number>();
  for (const row of truth.rows) expected.set(row.id, (expected.get(row.id) ?? 0) + 1);
  const foreign: string[] = [];
  const unexpected: string[] = [];
  for (const row of seen.rows) {
    const left = expected.get(row.id) ?? 0;
    if (left > 0) expected.set(row.id, left - 1);
    else (row.other_tenant ? foreign : unexpected).push(row.id);
  }
  const missing = [...expected].flatMap(([id, n]) => Array<string>(n).fill(id));
  const breaches: string[] = [];
  if (foreign.length > 0) breaches.push(`${as} ${foreign.length} row(s) of other tenants (or of none) are visible${examples(shape, foreign)}`);
  if (missing.length > 0) breaches.push(`${as} ${missing.length} of its own row(s) are not visible${examples(shape, missing)}`);
  if (unexpected.length > 0) breaches.push(`${as} ${unexpected.length} visible row(s) are not among its rows as the admin role sees them${examples(shape, unexpected)}`);
  if (breaches.length === 0) breaches.push(`${as} the visible rows differed from the tenant's rows, then matched on a second read: was the table written to during the check?`);
  return breaches;
}

/**
 * With no tenant (`setting` undefined: not set in this transaction, so NULL on a fresh connection
 * and '' on one that had a tenant before; or set to ''): no rows visible, INSERT refused.
 */
async function checkWithoutTenant(
  ctx: Context,
  shape: TableShape,
  { as, sample, setting }: { as: string; sample: Truth['sample']; setting?: string },
  result: Findings,
): Promise<number> {
  const client = await ctx.appPool.connect();
  let failure: Error | undefined;
  try {
    await client.query('BEGIN');
    if (setting !== undefined) await client.query(`SELECT set_config($1, $2, true)`, [ctx.config.setting, setting]);
    await client.query(SET_FORMATTING, [...ctx.formatting]);
    let visible = 0;
    const select = await probe(client, `SELECT count(*)::text AS n FROM ${shape.sql}`);
    if ('sqlState' in select) {
      result.breaches.push(`${as} SELECT ${describe(select)}; expected no rows and no error`);
    } else {
      visible = Number(select.rows[0].n);
      if (visible > 0) result.breaches.push(`${as} ${visible} row(s) are visible; expected none`);
    }
    if (!sample) {
      result.notes.push(`${as} the INSERT probe was skipped: neither tenant has a row in the table to copy`);
    } else if (!shape.insertable.includes(shape.tenantColumn)) {
      result.notes.push(`${as} the INSERT probe was skipped: the tenant column is not writable`);
    } else {
      const insert = await probe(client, insertCopy(shape), [sample.row, shape.tenantColumn, ctx.tenants[0]]);
      if (!refused(insert)) {
        result.breaches.push(`${as} INSERT of a row for tenant ${ctx.tenants[0]} ${describe(insert)}; expected a row level security refusal (42501)`);
      }
    }
    await client.query('ROLLBACK');
    return visible;
  } catch (error) {
    failure = error instanceof Error ? error : new Error(String(error));
    throw error;
  } finally {
    // pg-pool: release(error) destroys the client instead of pooling a session in an unknown state.
    client.release(failure);
  }
}

/** Runs `fn` as `tenantId` in a transaction that always rolls back, inside a savepoint in case it joined an outer one. */
async function inRolledBackTenantTransaction<T>(ctx: Context, tenantId: string, fn: (tx: Queryable) => Promise<T>): Promise<T> {
  const rollback = new Error('linkbay-multitenant: isolation check rollback');
  let value: T | undefined;
  try {
    await withTenantTransaction(
      ctx.appPool,
      tenantId,
      async (tx) => {
        await tx.query('SAVEPOINT lbmt_check');
        await tx.query(SET_FORMATTING, [...ctx.formatting]);
        value = await fn(tx);
        await tx.query('ROLLBACK TO SAVEPOINT lbmt_check');
        throw rollback;
      },
      // Unnamed statements: a one-off check should not fill the pool's prepared statement caches.
      { tenancy: ctx.config, prepare: false },
    );
  } catch (error) {
    if (error !== rollback) throw error;
  }
  return value as T;
}

/** Runs one statement (or `steps`) inside a savepoint that is rolled back, whatever it does. */
async function probe(q: Queryable, steps: string | (() => Promise<QueryOutput>), values: unknown[] = []): Promise<Outcome> {
  await q.query('SAVEPOINT lbmt_probe');
  try {
    const result = await (typeof steps === 'string' ? q.query(steps, values) : steps());
    return { rowCount: result.rowCount ?? 0, rows: result.rows };
  } catch (error) {
    const sqlState = sqlStateOf(error);
    if (sqlState === undefined) throw error;
    return { sqlState, message: String((error as { message?: unknown }).message) };
  } finally {
    await q.query('ROLLBACK TO SAVEPOINT lbmt_probe');
  }
}

/** Refused by row level security (or by a missing privilege, which refuses just as well). */
function refused(outcome: Outcome): boolean {
  return 'sqlState' in outcome && outcome.sqlState === '42501';
}

function affected(outcome: Outcome, rows: number): boolean {
  return 'rowCount' in outcome && outcome.rowCount === rows;
}

/** The SQLSTATE of a driver error, also when the library wrapped it (TenantIsolationError keeps it in `cause`). */
function sqlStateOf(error: unknown): string | undefined {
  for (let e = error, depth = 0; e !== null && typeof e === 'object' && depth < 5; e = (e as { cause?: unknown }).cause, depth += 1) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}

// Server messages that name objects, never row values. Others (a trigger's RAISE, say) may quote
// the row being written, so the report keeps only their SQLSTATE.
const SAFE_MESSAGES: ReadonlySet<string> = new Set(['42501', '23505', '23503', '23514', '23502', '22P02', '42704', '24000']);

function describe(outcome: Outcome): string {
  if (!('sqlState' in outcome)) return `affected ${outcome.rowCount} row(s)`;
  const message = SAFE_MESSAGES.has(outcome.sqlState) ? outcome.message : 'message withheld: it may quote row values';
  return `failed with SQLSTATE ${outcome.sqlState} (${message})`;
}

/** Identities as `(tenant_id, id)=(...)`; rows of tables without a primary key are not shown. */
function examples(shape: TableShape, ids: readonly string[]): string {
  if (shape.key.length === 0) return ' (no primary key: rows not shown)';
  const columns = `(${shape.key.join(', ')})`;
  const more = ids.length > EXAMPLES ? `, ... ${ids.length - EXAMPLES} more` : '';
  return `: ${ids.slice(0, EXAMPLES).map((id) => `${columns}=${id}`).join(', ')}${more}`;
}

/** Row identity as text: the primary key, else the whole row. */
function identity(shape: TableShape): string {
  if (shape.key.length === 0) return '(lbmt_row.*)::text';
  return `ROW(${shape.key.map((column) => `lbmt_row.${quoteIdent(column)}`).join(', ')})::text`;
}

/** `WHERE` for one row by the identity values `readTruth` sampled, parameters from `$first` on. */
function keyMatch(shape: TableShape, first: number): string {
  if (shape.key.length === 0) return `(lbmt_row.*)::text = $${first}`;
  return shape.key.map((column, i) => `lbmt_row.${quoteIdent(column)} = $${first + i}`).join(' AND ');
}

/**
 * INSERT of a copy of a sampled row with the tenant column replaced ($1 row as jsonb, $2 tenant
 * column, $3 tenant). Generated and identity columns are left to their defaults.
 */
function insertCopy(shape: TableShape): string {
  const columns = shape.insertable.map(quoteIdent);
  return `INSERT INTO ${shape.sql} (${columns.join(', ')})
    SELECT ${columns.map((column) => `lbmt_row.${column}`).join(', ')}
    FROM jsonb_populate_record(NULL::${shape.sql}, $1::jsonb || jsonb_build_object($2::text, $3::text)) AS lbmt_row`;
}

/** The table's primary key and insertable columns from pg_catalog; a string says why it cannot be checked. */
async function readShape(admin: AdminQueryable, table: TenantTable): Promise<TableShape | string> {
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
async function readTruth(admin: AdminQueryable, shape: TableShape, tenantId: string): Promise<Truth> {
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

/** The app role must be subject to RLS at all: not superuser, no BYPASSRLS. */
async function appRoleBreaches(appPool: TenantPool): Promise<string[]> {
  const client = await appPool.connect();
  let failure: Error | undefined;
  try {
    const { rows } = await client.query(`SELECT current_user AS role, rolsuper, rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = current_user`);
    const breaches: string[] = [];
    if (rows[0]?.rolsuper) breaches.push(`app role ${rows[0].role} is a superuser: row level security does not apply to it`);
    if (rows[0]?.rolbypassrls) breaches.push(`app role ${rows[0].role} has BYPASSRLS: row level security does not apply to it`);
    return breaches;
  } catch (error) {
    failure = error instanceof Error ? error : new Error(String(error));
    throw error;
  } finally {
    client.release(failure);
  }
}

function parseTenants(options: IsolationCheckOptions): readonly [string, string] {
  const tenants = options.tenants;
  if (!Array.isArray(tenants) || tenants.length !== 2) throw new TypeError('`tenants` must be two tenant ids');
  const a = canonicalTenantId(tenants[0], options.config.tenantIdType);
  const b = canonicalTenantId(tenants[1], options.config.tenantIdType);
  if (a === b) throw new TypeError('`tenants` must be two different tenant ids');
  return [a, b];
}

function selectTables(config: TenancyConfig, names: readonly string[] | undefined): readonly TenantTable[] {
  const tables = (names ?? config.tables.map((t) => `${t.schema}.${t.table}`)).map((name) => {
    const full = name.includes('.') ? name : `public.${name}`;
    const table = config.tables.find((t) => `${t.schema}.${t.table}` === full);
    if (!table) throw new TypeError(`\`tables\`: ${name} is not one of the config's tables`);
    return table;
  });
  // A check of nothing would report ok: refuse it instead.
  if (tables.length === 0) throw new TypeError('there is no table to check: `config.tables` (or `tables`) is empty');
  return tables;
}
