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
import { quoteLiteral, type TenancyConfig, type TenantTable } from '../config.js';
import { IsolationBreachError } from '../errors.js';
import { canonicalTenantId } from '../tenant-id.js';
import { withTenantTransaction, type TenantPool } from '../transaction.js';
import {
  examples,
  FINGERPRINT,
  identity,
  insertCopy,
  readShape,
  readTruth,
  type AdminQueryable,
  type TableShape,
  type Truth,
} from './shape.js';
import { tenantSettingStatement } from '../citus/testing.js';
import { describe, probe, refused, writeProbes, type Findings, type Probing, type Queryable } from './probes.js';

export { probeTenantIsolation, type LiveProbeOptions, type LiveProbeReport } from './live-probes.js';
export type { AdminQueryable } from './shape.js';

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
    if (setting !== undefined) {
      const statement = tenantSettingStatement(ctx.config, setting); // SET LOCAL on Citus
      await client.query(statement.text, statement.values);
    }
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
