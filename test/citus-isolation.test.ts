/**
 * Tenant isolation on a real Citus cluster (coordinator + 2 workers, test/helpers/citus.ts), with
 * the Citus-mode schema: the shards' policies are the ones enforced, so every check here is about
 * what the workers return. Application queries run as the generated app role.
 */
import test from 'ava';
import pg from 'pg';
import { CitusTenantNotSetError, TenantIsolationError, tenantQuery, withTenantTransaction } from '../src/index.js';
import { citusTenantQuery, withCitusTenantTransaction } from '../src/citus/index.js';
import { createCitusTestDatabase, CITUS_SCHEMA, CITUS_TABLES, useCitusCluster, type CitusTestDatabase } from './helpers/citus-db.js';
import { newTenantId } from './helpers/db.js';
import { observePool } from './helpers/observe.js';

const { citusTest, cluster } = useCitusCluster(test);
let shared: Promise<{ db: CitusTestDatabase; tenants: string[] }> | undefined;

/** One database for these tests (removed with the cluster): 8 tenants, 5 orders of 2 lines each. */
function seeded() {
  const c = cluster();
  shared ??= (async () => {
    const db = await createCitusTestDatabase(c, { schema: CITUS_SCHEMA, tenancy: CITUS_TABLES });
    const tenants = Array.from({ length: 8 }, newTenantId);
    for (const [i, tenant] of tenants.entries()) {
      await withCitusTenantTransaction(db.appPool, tenant, async (tx) => {
        for (let order = 1; order <= 5; order += 1) {
          await tx.query(`INSERT INTO orders (tenant_id, id, item, plan) VALUES ($1, $2, $3, 'basic')`, [tenant, order, `t${i}-o${order}`]);
          await tx.query(`INSERT INTO order_lines (tenant_id, order_id, line, sku) VALUES ($1, $2, 1, $3), ($1, $2, 2, $3)`, [tenant, order, `t${i}`]);
        }
      }, { tenancy: db.config });
    }
    return { db, tenants };
  })();
  return shared;
}

citusTest('the generated schema distributes the tenant tables by the tenant column, colocated, plans as a reference table', async (t) => {
  const s = await seeded();
  const { rows } = await s.db.superQuery<{ rel: string; method: string; column: string | null; colocation: number }>(
    `SELECT logicalrelid::text AS rel, partmethod AS method, column_to_column_name(logicalrelid, partkey) AS column, colocationid AS colocation
       FROM pg_dist_partition WHERE logicalrelid::text IN ('orders', 'order_lines', 'plans', 'linkbay.tenants') ORDER BY 1`,
  );
  t.deepEqual(rows.map((r) => [r.rel, r.method, r.column]), [
    ['linkbay.tenants', 'n', null],
    ['order_lines', 'h', 'tenant_id'],
    ['orders', 'h', 'tenant_id'],
    ['plans', 'n', null],
  ]);
  t.is(rows[1]!.colocation, rows[2]!.colocation);
});

citusTest('every tenant sees exactly its rows: router, multi-shard and colocated-join queries', async (t) => {
  const s = await seeded();
  const options = { tenancy: s.db.config };
  for (const [i, tenant] of s.tenants.entries()) {
    const router = await tenantQuery(s.db.appPool, tenant, 'SELECT tenant_id, item FROM orders WHERE tenant_id = $1 ORDER BY id', [tenant], options);
    t.deepEqual(router.rows.map((r) => r.item), [1, 2, 3, 4, 5].map((o) => `t${i}-o${o}`));
    // No filter on the distribution column: a query to every shard, each filtered by its policy.
    const multi = await tenantQuery(s.db.appPool, tenant, 'SELECT tenant_id, count(*)::int AS n FROM orders GROUP BY tenant_id', [], options);
    t.deepEqual(multi.rows, [{ tenant_id: tenant, n: 5 }]);
    const join = await tenantQuery(
      s.db.appPool,
      tenant,
      `SELECT o.tenant_id, l.sku, count(*)::int AS n, max(p.label) AS plan FROM orders o
         JOIN order_lines l ON l.tenant_id = o.tenant_id AND l.order_id = o.id JOIN plans p ON p.id = o.plan
        GROUP BY o.tenant_id, l.sku`,
      [],
      options,
    );
    t.deepEqual(join.rows, [{ tenant_id: tenant, sku: `t${i}`, n: 10, plan: 'Basic' }]);
  }
  const all = await s.db.adminPool.query('SELECT count(*)::int AS n FROM orders');
  t.is(all.rows[0].n, 40, 'the admin role (BYPASSRLS) sees every tenant: the rows are there');
});

citusTest('no tenant set sees nothing: plain queries, and a transaction that never set one', async (t) => {
  const s = await seeded();
  t.is((await s.db.appPool.query('SELECT count(*)::int AS n FROM orders')).rows[0].n, 0);
  t.is((await s.db.appPool.query('SELECT count(*)::int AS n FROM orders o JOIN order_lines l USING (tenant_id)')).rows[0].n, 0);
  const client = await s.db.appPool.connect();
  try {
    await client.query('BEGIN');
    t.is((await client.query('SELECT count(*)::int AS n FROM orders')).rows[0].n, 0);
    await client.query('COMMIT');
  } finally {
    client.release();
  }
});

citusTest('a write naming another tenant is refused by the shard; updates and deletes reach no foreign row', async (t) => {
  const s = await seeded();
  const [a, b] = s.tenants as [string, string];
  const options = { tenancy: s.db.config };
  const error = await t.throwsAsync(tenantQuery(s.db.appPool, a, `INSERT INTO orders (tenant_id, item) VALUES ($1, 'evil')`, [b], options));
  t.true(error instanceof TenantIsolationError, String(error));
  t.regex(error!.message, /orders_\d+/, 'the refusal came from a shard');
  const updated = await tenantQuery(s.db.appPool, a, `UPDATE orders SET item = 'taken' WHERE tenant_id = $1`, [b], options);
  t.is(updated.rowCount, 0);
  const deleted = await tenantQuery(s.db.appPool, a, `DELETE FROM order_lines WHERE tenant_id <> $1`, [a], options);
  t.is(deleted.rowCount, 0);
  // Moving an own row to another tenant: Citus refuses to modify the distribution column at all.
  const moved = await t.throwsAsync(tenantQuery(s.db.appPool, a, `UPDATE orders SET tenant_id = $2 WHERE tenant_id = $1`, [a, b], options));
  t.is((moved as { code?: string }).code, '0A000');
  const counts = await s.db.adminPool.query(`SELECT count(*) FILTER (WHERE tenant_id = $1)::int AS b, count(*) FILTER (WHERE item IN ('evil', 'taken'))::int AS bad FROM orders`, [b]);
  t.deepEqual(counts.rows[0], { b: 5, bad: 0 });
});

citusTest('tenantQuery is one round trip and a transaction of k statements k + 1; after COMMIT the connection carries no tenant', async (t) => {
  const s = await seeded();
  const pool = s.db.pool(s.db.appUrl, { max: 1 });
  const observed = await observePool(pool);
  const options = { tenancy: s.db.config };
  const [a] = s.tenants as [string];
  const { rows } = await citusTenantQuery(observed.pool, a, 'SELECT count(*)::int AS n FROM orders', [], options);
  t.is(rows[0].n, 5);
  t.is(observed.counts.roundTrips, 1, 'BEGIN, set_tenant, the statement and COMMIT in one Sync');
  observed.counts.roundTrips = 0;
  await withCitusTenantTransaction(observed.pool, a, async (tx) => {
    await tx.query('SELECT count(*) FROM orders');
    await tx.query('SELECT count(*) FROM order_lines');
  }, options);
  t.is(observed.counts.roundTrips, 3, 'BEGIN and set_tenant rode with the first statement; then the second; then COMMIT');
  t.is(observed.counts.destroyed, 0);
  // The same (only) connection, after both: no tenant, no rows, on the coordinator and the shards.
  const after = await pool.query(`SELECT current_setting('app.tenant_id', true) AS s, (SELECT count(*)::int FROM orders) AS n`);
  t.true(after.rows[0].s === '' || after.rows[0].s === null);
  t.is(after.rows[0].n, 0);
});

citusTest('ROLLBACK TO SAVEPOINT restores the earlier tenant on the workers; tx.savepoint keeps the tenant', async (t) => {
  const s = await seeded();
  const [a, b] = s.tenants as [string, string];
  const client = await s.db.appPool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT linkbay.set_tenant($1)', [a]);
    await client.query('SAVEPOINT s');
    await client.query('SELECT linkbay.set_tenant($1)', [b]);
    t.deepEqual((await client.query('SELECT DISTINCT tenant_id FROM orders')).rows, [{ tenant_id: b }]);
    await client.query('ROLLBACK TO SAVEPOINT s');
    t.deepEqual((await client.query('SELECT DISTINCT tenant_id FROM orders')).rows, [{ tenant_id: a }]);
    await client.query('COMMIT');
  } finally {
    client.release();
  }
  const seen = await withCitusTenantTransaction(s.db.appPool, a, async (tx) => {
    await t.throwsAsync(tx.savepoint(() => tx.query('SELECT 1/0')));
    return (await tx.query('SELECT DISTINCT tenant_id FROM orders')).rows;
  }, { tenancy: s.db.config });
  t.deepEqual(seen, [{ tenant_id: a }]);
});

citusTest('a failed statement rolls back and the client goes back to the pool clean', async (t) => {
  const s = await seeded();
  const pool = s.db.pool(s.db.appUrl, { max: 1 });
  const observed = await observePool(pool);
  const [a] = s.tenants as [string];
  const options = { tenancy: s.db.config };
  await t.throwsAsync(citusTenantQuery(observed.pool, a, `INSERT INTO orders (tenant_id, id, item) VALUES ($1, 1, 'duplicate')`, [a], options), { code: '23505' });
  t.is(observed.counts.roundTrips, 2, 'the batch, then ROLLBACK');
  t.deepEqual([observed.counts.released, observed.counts.destroyed], [1, 0]);
  const status = await pool.query('SELECT 1 AS ok');
  t.is(status.rows[0].ok, 1);
  t.is((await citusTenantQuery(observed.pool, a, 'SELECT count(*)::int AS n FROM orders', [], options)).rows[0].n, 5);
});

citusTest('fails closed: without the role setting, or without set_tenant, nothing runs and CitusTenantNotSetError is thrown', async (t) => {
  const c = cluster();
  const db = await createCitusTestDatabase(c, { schema: CITUS_SCHEMA, tenancy: CITUS_TABLES });
  t.teardown(() => db.drop());
  const a = newTenantId();
  await db.superQuery(`ALTER ROLE ${db.config.roles.app} RESET citus.propagate_set_commands`);
  const pool = db.pool(db.appUrl, { max: 1 });
  const options = { tenancy: db.config };
  const insert = `INSERT INTO orders (tenant_id, item) VALUES ($1, 'x')`;
  const single = await t.throwsAsync(tenantQuery(pool, a, insert, [a], options));
  t.true(single instanceof CitusTenantNotSetError, String(single));
  t.is((single as CitusTenantNotSetError).code, 'LBMT_CITUS_TENANT_NOT_SET');
  const multi = await t.throwsAsync(withTenantTransaction(pool, a, (tx) => tx.query(insert, [a]), options));
  t.true(multi instanceof CitusTenantNotSetError, String(multi));
  // set_tenant missing altogether (the vanilla schema, or a database that never got the Citus files).
  await db.superQuery('DROP FUNCTION linkbay.set_tenant(text)');
  const missing = await t.throwsAsync(tenantQuery(db.appPool, a, insert, [a], options));
  t.true(missing instanceof CitusTenantNotSetError, String(missing));
  t.is((await db.adminPool.query('SELECT count(*)::int AS n FROM orders')).rows[0].n, 0);
});

citusTest('a plain set_config batch (the vanilla path) is not what Citus mode sends: the tenancy picks the engine', async (t) => {
  const s = await seeded();
  // What the vanilla one-Sync batch would do on Citus: the setting stays on the coordinator.
  const vanilla = { tenancy: { ...s.db.config, engine: 'postgres' as const } };
  const [a] = s.tenants as [string];
  const { rows } = await tenantQuery(s.db.appPool, a, 'SELECT count(*)::int AS n FROM orders', [], vanilla);
  t.is(rows[0].n, 0, 'set_config(.., true) never reached the shards');
  t.is((await tenantQuery(s.db.appPool, a, 'SELECT count(*)::int AS n FROM orders', [], { tenancy: s.db.config })).rows[0].n, 5);
  await t.throwsAsync(citusTenantQuery(s.db.appPool, a, 'SELECT 1', [], vanilla), { code: 'LBMT_CONFIG_INVALID' });
});

citusTest('the raw client check: pg.Client as the app role sees no rows without the library', async (t) => {
  const s = await seeded();
  const client = new pg.Client({ connectionString: s.db.appUrl });
  await client.connect();
  try {
    // A session-level SET is not propagated by Citus either: still nothing on the shards.
    await client.query(`SET app.tenant_id = '${s.tenants[0]}'`);
    t.is((await client.query('SELECT count(*)::int AS n FROM orders')).rows[0].n, 0);
  } finally {
    await client.end();
  }
});
