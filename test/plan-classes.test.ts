import anyTest, { type TestFn } from 'ava';
import { tenantQuery, withTenantTransaction } from '../src/index.js';
import { forgetPlanClasses } from '../src/plan-classes.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA, type TestDatabase } from './helpers/db.js';

// Serial: the last test drops the function every other test relies on.
const test = anyTest as TestFn<{ db: TestDatabase; big: string; small: string; empty: [string, string] }>;

test.before(async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  const big = newTenantId();
  const small = newTenantId();
  // The big tenant is frequent enough for ANALYZE to put it in the tenant column's MCV list; a
  // tenant with one row or none is estimated with the common formula (values seen once are never MCVs).
  await db.superQuery(`INSERT INTO orders (tenant_id, item) SELECT $1, 'big' || g FROM generate_series(1, 300) g`, [big]);
  await db.superQuery(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'small')`, [small]);
  await db.superQuery('ANALYZE orders');
  t.context = { db, big, small, empty: [newTenantId(), newTenantId()] };
});

test.after.always(async (t) => {
  await t.context.db?.drop();
});

type Prepared = { name: string; statement: string; generic: number; custom: number };
const preparedLike = async (pool: Parameters<typeof tenantQuery>[0], tenant: string, marker: string): Promise<Prepared[]> =>
  (
    await tenantQuery(
      pool,
      tenant,
      `SELECT name, statement, generic_plans::int AS generic, custom_plans::int AS custom FROM pg_prepared_statements WHERE statement LIKE $1 ORDER BY name`,
      [`%${marker}%`],
      { prepare: 'none' },
    )
  ).rows;

test.serial('the app role may ask which tenants the planner estimates apart, and gets tenant ids only', async (t) => {
  const { db, big, small } = t.context;
  const { rows } = await db.appPool.query(`SELECT linkbay.planner_tenants(ARRAY['tenant_id']) AS id`);
  const ids = rows.map((r) => r.id as string);
  t.true(ids.includes(big));
  t.false(ids.includes(small));
  // pg_stats itself shows the app role nothing of a table under RLS.
  const direct = await db.appPool.query(`SELECT most_common_vals FROM pg_stats WHERE tablename = 'orders' AND attname = 'tenant_id'`);
  t.is(direct.rowCount, 0);
  // PUBLIC may not call it.
  const other = await db.superQuery(`SELECT has_function_privilege('public', 'linkbay.planner_tenants(text[])', 'EXECUTE') AS ok`);
  t.false(other.rows[0].ok);
});

test.serial('by default a statement is prepared once for the tenants the planner estimates alike, once per tenant it estimates apart', async (t) => {
  const { db, big, small, empty } = t.context;
  const pool = db.pool(db.appUrl, { max: 1 });
  for (const tenant of [big, small, ...empty, big, small]) {
    await tenantQuery(pool, tenant, 'SELECT count(*) AS classed FROM orders');
    await tenantQuery(pool, tenant, 'SELECT count(*) AS classed_param FROM orders WHERE item <> $1', ['x']);
    await withTenantTransaction(pool, tenant, (tx) => tx.query('SELECT count(*) AS classed_tx FROM orders'));
  }
  for (const marker of ['classed FROM', 'classed_param', 'classed_tx']) {
    const prepared = await preparedLike(pool, small, marker);
    t.is(prepared.length, 2, `${marker}: one statement for the common class, one for the big tenant`);
    for (const p of prepared) t.regex(p.name, /^lbmt_[0-9a-f]{20}_[0-9a-f]{6}(_[0-9a-f]{10})?$/);
    const [common, own] = [prepared.find((p) => !/_[0-9a-f]{10}$/.test(p.name))!, prepared.find((p) => /_[0-9a-f]{10}$/.test(p.name))!];
    t.is(common.generic + common.custom, 4, `${marker}: the small tenant and both empty ones share one statement`);
    t.is(own.generic + own.custom, 2, `${marker}: the big tenant runs its own`);
  }
  // Results are each tenant's own, whatever statement they ran.
  t.is(Number((await tenantQuery(pool, big, 'SELECT count(*) AS classed FROM orders')).rows[0].classed), 300);
  t.is(Number((await tenantQuery(pool, small, 'SELECT count(*) AS classed FROM orders')).rows[0].classed), 1);
  t.is(Number((await tenantQuery(pool, empty[0], 'SELECT count(*) AS classed FROM orders')).rows[0].classed), 0);
});

test.serial('the big tenant gets a plan made for itself even when a small tenant prepared the statement first', async (t) => {
  const { db, big, small } = t.context;
  const pool = db.pool(db.appUrl, { max: 1 });
  const text = "SELECT item FROM orders WHERE item LIKE 'b%' ORDER BY created_at DESC";
  // With one shared statement ('all') the small tenant's generic plan would be reused; per class it is not.
  for (let i = 0; i < 6; i += 1) await tenantQuery(pool, small, text);
  t.is((await tenantQuery(pool, big, text)).rowCount, 300);
  const prepared = (await preparedLike(pool, small, "LIKE 'b%'")).filter((p) => p.statement === text);
  t.is(prepared.length, 2);
  t.deepEqual(prepared.map((p) => p.generic + p.custom).sort(), [1, 6]);
});

test.serial('a change in the lists renames every class, after a refresh', async (t) => {
  const { db, small } = t.context;
  const pool = db.pool(db.appUrl, { max: 1 });
  await tenantQuery(pool, small, 'SELECT 1 AS renamed');
  const before = (await preparedLike(pool, small, 'renamed')).map((p) => p.name);
  // The small tenant becomes frequent; after ANALYZE and a refresh of what the pool knows it has a class of its own.
  await db.superQuery(`INSERT INTO orders (tenant_id, item) SELECT $1, 'more' || g FROM generate_series(1, 300) g`, [small]);
  await db.superQuery('ANALYZE orders');
  forgetPlanClasses(pool);
  await tenantQuery(pool, small, 'SELECT 1 AS renamed');
  const after = (await preparedLike(pool, small, 'renamed')).map((p) => p.name);
  t.is(after.length, 2);
  const renamed = after.find((n) => !before.includes(n))!;
  t.regex(renamed, /_[0-9a-f]{6}_[0-9a-f]{10}$/, 'now a class of its own');
  t.not(renamed.split('_')[2], before[0]!.split('_')[2], 'under a new digest of the lists');
  await db.superQuery(`DELETE FROM orders WHERE item LIKE 'more%'`);
  await db.superQuery('ANALYZE orders');
});

test.serial('without linkbay.planner_tenants() statements are planned at each execution, and nothing fails', async (t) => {
  const { db, big, small } = t.context;
  await db.superQuery('DROP FUNCTION linkbay.planner_tenants(text[])');
  const pool = db.pool(db.appUrl, { max: 1 });
  for (let i = 0; i < 8; i += 1) {
    t.is(Number((await tenantQuery(pool, small, 'SELECT count(*) AS fallback FROM orders WHERE item <> $1', ['x'])).rows[0].fallback), 1);
  }
  t.is(Number((await tenantQuery(pool, big, 'SELECT count(*) AS fallback FROM orders WHERE item <> $1', ['x'])).rows[0].fallback), 300);
  await tenantQuery(pool, small, 'SELECT 1 AS fallback_no_param');
  const prepared = await preparedLike(pool, small, 'fallback');
  t.is(prepared.length, 1, 'with parameters: named, once; without: unnamed');
  t.is(prepared[0]!.name.length, 'lbmt_'.length + 20, 'no class suffix');
  t.is(prepared[0]!.generic, 0, 'never a generic plan: each execution planned for its tenant');
  t.true(prepared[0]!.custom >= 9);
});
