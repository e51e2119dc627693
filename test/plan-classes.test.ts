import anyTest, { type TestFn } from 'ava';
import { tenantQuery, withTenantTransaction } from '../src/index.js';
import pg from 'pg';
import { generateRlsSql } from '../src/index.js';
import { classify, forgetPlanClasses } from '../src/plan-classes.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA, type TestDatabase } from './helpers/db.js';
import { waitFor } from './helpers/wait.js';

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

test.serial('the app role reads the estimated tenant frequencies, and nothing of any other column', async (t) => {
  const { db, big, small } = t.context;
  const { rows } = await db.appPool.query(`SELECT relation, tenant, frequency FROM linkbay.planner_tenants()`);
  const listed = rows.filter((r) => r.tenant !== null);
  t.true(listed.some((r) => r.tenant === big && r.frequency > 0.9), 'the big tenant holds almost all rows');
  t.false(listed.some((r) => r.tenant === small));
  t.is(rows.filter((r) => r.tenant === null).length, 1, 'one frequency for every tenant not listed');
  // Only the column the isolation policy references is read: `item` has frequent values too, never returned.
  for (const r of listed) t.regex(r.tenant, /^[0-9a-f-]{36}$/);
  // pg_stats itself shows the app role nothing of a table under RLS.
  const direct = await db.appPool.query(`SELECT most_common_vals FROM pg_stats WHERE tablename = 'orders' AND attname = 'tenant_id'`);
  t.is(direct.rowCount, 0);
  const privileges = await db.superQuery(
    `SELECT has_function_privilege('public', 'linkbay.planner_tenants()', 'EXECUTE') AS public,
            (SELECT proconfig FROM pg_proc WHERE oid = 'linkbay.planner_tenants()'::regprocedure) AS config`,
  );
  t.false(privileges.rows[0].public);
  t.deepEqual(privileges.rows[0].config, ['search_path=pg_catalog, pg_temp']);
});

test.serial('by default a statement is prepared once per class: the big tenant apart, the others together', async (t) => {
  const { db, big, small, empty } = t.context;
  const pool = db.pool(db.appUrl, { max: 1 });
  for (const tenant of [big, small, ...empty, big, small]) {
    await tenantQuery(pool, tenant, 'SELECT count(*) AS classed FROM orders');
    await tenantQuery(pool, tenant, 'SELECT count(*) AS classed_param FROM orders WHERE item <> $1', ['x']);
    await withTenantTransaction(pool, tenant, (tx) => tx.query('SELECT count(*) AS classed_tx FROM orders'));
  }
  for (const marker of ['classed FROM', 'classed_param', 'classed_tx']) {
    const prepared = await preparedLike(pool, small, marker);
    for (const p of prepared) t.regex(p.name, /^lbmt_[0-9a-f]{20}_[0-9a-f]{6}_[0-9a-f]{8}$/);
    t.deepEqual(
      prepared.map((p) => p.generic + p.custom).sort(),
      [2, 4],
      `${marker}: the big tenant runs its own statement (2 runs); the small tenant and both empty ones share one (4 runs)`,
    );
  }
  // Results are each tenant's own, whatever statement they ran.
  t.is(Number((await tenantQuery(pool, big, 'SELECT count(*) AS classed FROM orders')).rows[0].classed), 300);
  t.is(Number((await tenantQuery(pool, small, 'SELECT count(*) AS classed FROM orders')).rows[0].classed), 1);
  t.is(Number((await tenantQuery(pool, empty[0], 'SELECT count(*) AS classed FROM orders')).rows[0].classed), 0);
});

test.serial('the big tenant does not run the statement a small tenant prepared first', async (t) => {
  const { db, big, small } = t.context;
  const pool = db.pool(db.appUrl, { max: 1 });
  const text = "SELECT item FROM orders WHERE item LIKE 'b%' ORDER BY created_at DESC";
  // One shared statement ('all') would hand the big tenant the small tenant's generic plan.
  for (let i = 0; i < 6; i += 1) await tenantQuery(pool, small, text);
  t.is((await tenantQuery(pool, big, text)).rowCount, 300);
  const prepared = (await preparedLike(pool, small, "LIKE 'b%'")).filter((p) => p.statement === text);
  t.deepEqual(prepared.map((p) => p.generic + p.custom).sort(), [1, 6]);
});

test.serial('a statement that names the tenant in a parameter is planned at each execution, unnamed', async (t) => {
  const { db, small } = t.context;
  const pool = db.pool(db.appUrl, { max: 1 });
  for (const spelling of [small, small.toUpperCase()]) {
    await tenantQuery(pool, small, 'SELECT count(*) AS explicit_tenant FROM orders WHERE tenant_id = $1', [spelling]);
  }
  await tenantQuery(pool, small, 'SELECT count(*) AS explicit_other FROM orders WHERE item = $1', ['small']);
  t.deepEqual((await preparedLike(pool, small, 'explicit_tenant')).length, 0);
  t.deepEqual((await preparedLike(pool, small, 'explicit_other')).length, 1);
});

test.serial('a change of class after ANALYZE renames every class, once the pool reads the frequencies again', async (t) => {
  const { db, big, small } = t.context;
  const pool = db.pool(db.appUrl, { max: 1 });
  const nameFor = async (tenant: string) => {
    await tenantQuery(pool, tenant, 'SELECT 1 AS renamed');
    return (await preparedLike(pool, tenant, 'renamed')).map((p) => p.name);
  };
  const [smallBefore] = await nameFor(small);
  const bigBefore = (await nameFor(big)).find((n) => n !== smallBefore)!;
  t.truthy(bigBefore);
  // The small tenant grows as big as the big one (and a third tenant arrives): 300, 300 and 200 rows
  // are 37.5%, 37.5% and 25%, one power of two. After ANALYZE and a refresh they are one class.
  await db.superQuery(`INSERT INTO orders (tenant_id, item) SELECT $1, 'more' || g FROM generate_series(1, 299) g`, [small]);
  await db.superQuery(`INSERT INTO orders (tenant_id, item) SELECT $1, 'more' || g FROM generate_series(1, 200) g`, [newTenantId()]);
  await db.superQuery('ANALYZE orders');
  forgetPlanClasses(pool);
  const smallAfter = (await nameFor(small)).filter((n) => n !== smallBefore && n !== bigBefore);
  t.is(smallAfter.length, 1);
  const bigAfter = (await nameFor(big)).filter((n) => n !== smallBefore && n !== bigBefore);
  t.deepEqual(bigAfter, smallAfter, 'now one class');
  t.not(smallAfter[0]!.split('_')[2], smallBefore!.split('_')[2], 'under a new assignment digest');
  await db.superQuery(`DELETE FROM orders WHERE item LIKE 'more%'`);
  await db.superQuery('ANALYZE orders');
});

test.serial('a migration run by a role that cannot act as the admin role leaves the function out, with a notice', async (t) => {
  const { db } = t.context;
  const registry = generateRlsSql(db.config, { only: 'setup' }).find((f) => f.name.includes('linkbay-tenants'))!.sql;
  const block = registry.slice(registry.indexOf('DO $plan_classes$'), registry.indexOf('$plan_classes$;') + '$plan_classes$;'.length);
  const client = new pg.Client({ connectionString: db.superUrl });
  await client.connect();
  const notices: string[] = [];
  client.on('notice', (n) => notices.push(n.message ?? ''));
  try {
    await client.query(`SET ROLE ${db.config.roles.owner}`);
    await client.query(block);
    await client.query('RESET ROLE');
  } finally {
    await client.end();
  }
  t.true(notices.some((n) => n.includes('planner_tenants() not created')));
  const { rows } = await db.superQuery(`SELECT pg_get_userbyid(proowner) AS owner FROM pg_proc WHERE proname = 'planner_tenants'`);
  t.deepEqual(rows, [{ owner: db.config.roles.admin }], 'the existing function is left as it was');
});

test.serial('a slow first read of the classes: the first statements fall back to custom plans after 2 s, the next ones at once', async (t) => {
  const { db, small } = t.context;
  const registry = generateRlsSql(db.config, { only: 'setup' }).find((f) => f.name.includes('linkbay-tenants'))!.sql;
  const original = registry.slice(registry.indexOf('DO $plan_classes$'), registry.indexOf('$plan_classes$;') + '$plan_classes$;'.length);
  // The read of the classes waits for an advisory lock that the test holds: it is over when the test says.
  const key = Math.floor(Math.random() * 2 ** 31);
  await db.superQuery(`CREATE OR REPLACE FUNCTION linkbay.planner_tenants()
    RETURNS TABLE (relation text, tenant text, frequency double precision)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ BEGIN PERFORM pg_catalog.pg_advisory_xact_lock(${key}); END $$`);
  t.teardown(() => db.superQuery(original).then(() => undefined));
  const holder = new pg.Client({ connectionString: db.superUrl });
  await holder.connect();
  t.teardown(() => holder.end());
  await holder.query('SELECT pg_advisory_lock($1)', [key]);
  const pool = db.pool(db.appUrl, { max: 2 });
  await tenantQuery(pool, small, 'SELECT 1 AS slow_first');
  await tenantQuery(pool, small, 'SELECT 1 AS slow_second');
  // Both answered while the test holds the lock, so neither waited for the read, which is still waiting.
  await waitFor(
    async () => (await db.superQuery(`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory' AND datname = current_database()`)).rowCount === 1,
    { message: 'the read of the classes waits for the lock' },
  );
  t.is((await preparedLike(pool, small, 'slow_')).length, 0, 'custom plans meanwhile: statements without parameters unnamed');
  await holder.query('SELECT pg_advisory_unlock($1)', [key]);
  await waitFor(
    async () => {
      await tenantQuery(pool, small, 'SELECT 1 AS slow_after');
      return /^lbmt_[0-9a-f]{20}_[0-9a-f]{6}_[0-9a-f]{8}$/.test((await preparedLike(pool, small, 'slow_after'))[0]?.name ?? '');
    },
    { message: 'classes once the read is over' },
  );
  t.pass();
});

test.serial('without linkbay.planner_tenants() statements are planned at each execution, and nothing fails', async (t) => {
  const { db, big, small } = t.context;
  await db.superQuery('DROP FUNCTION linkbay.planner_tenants()');
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

test('classes: tenants estimated within the same power of two share one; anyone changing class renames all', (t) => {
  const rows = (listed: Record<string, number>, common = 0.001) => [
    { relation: '1', tenant: null, frequency: common },
    ...Object.entries(listed).map(([tenant, frequency]) => ({ relation: '1', tenant, frequency })),
  ];
  const c = classify(rows({ big: 0.3, mid1: 0.02, mid2: 0.025, near: 0.0011 }));
  t.is(c.listed!.get('mid1'), c.listed!.get('mid2'), '0.02 and 0.025: one power of two');
  t.not(c.listed!.get('big'), c.listed!.get('mid1'));
  t.false(c.listed!.has('near'), 'listed, but estimated like the unlisted: the common class');
  t.not(c.common, c.listed!.get('big'));
  const moved = classify(rows({ big: 0.3, mid1: 0.02, mid2: 0.05, near: 0.0011 }));
  t.not(moved.listed!.get('big'), c.listed!.get('big'), 'mid2 changed class: every name changes');
  const same = classify(rows({ big: 0.31, mid1: 0.021, mid2: 0.026, near: 0.00105 }));
  t.deepEqual([...same.listed!], [...c.listed!], 'new frequencies, same classes: same names');
  t.is(same.common, c.common);
});
