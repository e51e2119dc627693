/**
 * Tenant placement on a real Citus cluster: a tenant isolated to a shard of its own, that shard
 * moved to the other worker, and isolation checked again afterwards (Citus re-creates the shards'
 * policies on splits and moves). Statistics: test/citus-metrics.test.ts.
 */
import test from 'ava';
import { PostureError, checkPosture, formatPostureReport, tenantQuery, TenantIsolationError } from '../src/index.js';
import { isolateTenant, moveTenant, tenantPlacement } from '../src/citus/index.js';
import { assertTenantIsolation } from '../src/testing/index.js';
import { createCitusTestDatabase, CITUS_SCHEMA, CITUS_TABLES, useCitusCluster } from './helpers/citus-db.js';
import { newTenantId } from './helpers/db.js';

const { citusTest, cluster } = useCitusCluster(test);

/**
 * Citus creates the new shards as the tables' owner, which needs CREATE on their schema (a role
 * that runs migrations has it; PostgreSQL 15 no longer gives it on public). Propagated by Citus.
 */
async function ownerMayCreate(db: Awaited<ReturnType<typeof createCitusTestDatabase>>): Promise<void> {
  await db.superQuery(`GRANT CREATE ON SCHEMA public TO ${db.config.roles.owner}`);
}


citusTest('after isolateTenant and a shard move every tenant is still isolated', async (t) => {
  const c = cluster();
  const db = await createCitusTestDatabase(c, { schema: CITUS_SCHEMA, tenancy: CITUS_TABLES });
  t.teardown(() => db.drop());
  await ownerMayCreate(db);
  const tenants = Array.from({ length: 6 }, newTenantId);
  for (const [i, tenant] of tenants.entries()) {
    await db.superQuery(`INSERT INTO orders (tenant_id, id, item) SELECT $1, g, $2 FROM generate_series(1, 3) g`, [tenant, `t${i}`]);
    await db.superQuery(`INSERT INTO order_lines (tenant_id, order_id, line, sku) SELECT $1, g, 1, $2 FROM generate_series(1, 3) g`, [tenant, `t${i}`]);
  }
  const [big] = tenants as [string];
  // A superuser: Citus copies shard rows as the calling role (see the next test).
  const owner = db.pool(db.superUrl, { max: 1 });
  const options = { tenancy: db.config };

  const before = await tenantPlacement(owner, big, options);
  t.false(before.isolated);
  const isolated = await isolateTenant(owner, big, options);
  t.true(isolated.isolated);
  t.not(isolated.shardId, before.shardId);
  t.is(isolated.port, before.port, 'isolation keeps the shard on its node');
  // Its colocated table was split with it (CASCADE): the tenant's order_lines shard holds only it.
  const lines = await db.superQuery(
    `SELECT shardminvalue = shardmaxvalue AS alone FROM pg_dist_shard WHERE shardid = get_shard_id_for_distribution_column('order_lines', $1::uuid)`,
    [big],
  );
  t.true(lines.rows[0].alone);
  t.deepEqual(await isolateTenant(owner, big, options), isolated, 'idempotent');

  const target = c.workers.find((w) => w.port !== isolated.port)!;
  const moved = await moveTenant(owner, big, { host: '127.0.0.1', port: target.port }, options);
  t.is(moved.port, target.port);
  t.is(moved.shardId, isolated.shardId);

  for (const [i, tenant] of tenants.entries()) {
    const own = await tenantQuery(db.appPool, tenant, 'SELECT DISTINCT item FROM orders WHERE tenant_id = $1', [tenant], options);
    t.deepEqual(own.rows, [{ item: `t${i}` }]);
    const all = await tenantQuery(db.appPool, tenant, 'SELECT tenant_id, count(*)::int AS n FROM orders o JOIN order_lines l USING (tenant_id) GROUP BY 1', [], options);
    t.deepEqual(all.rows, [{ tenant_id: tenant, n: 9 }]);
  }
  const refused = await t.throwsAsync(tenantQuery(db.appPool, tenants[1]!, `INSERT INTO orders (tenant_id, id, item) VALUES ($1, 99, 'x')`, [big], options));
  t.true(refused instanceof TenantIsolationError);
  const report = await checkPosture(db.appPool, db.config);
  t.true(report.ok, formatPostureReport(report));
  await assertTenantIsolation({ appPool: db.appPool, adminPool: db.adminPool, config: db.config, tenants: [big, tenants[1]!] });
  t.is((await tenantQuery(db.appPool, big, 'SELECT count(*)::int AS n FROM orders', [], options)).rows[0].n, 3);
});

citusTest('isolateTenant re-reads the shards afterwards: a shard left without its policy is a PostureError', async (t) => {
  const c = cluster();
  const db = await createCitusTestDatabase(c, { schema: CITUS_SCHEMA, tenancy: CITUS_TABLES });
  t.teardown(() => db.drop());
  await ownerMayCreate(db);
  const tenant = newTenantId();
  await db.superQuery(`INSERT INTO orders (tenant_id, id, item) VALUES ($1, 1, 'x')`, [tenant]);
  // A shard whose policy was dropped by hand on its worker (another tenant's shard than this one's).
  const { rows } = await db.superQuery<{ shard: string; port: number }>(
    `SELECT shard_name AS shard, nodeport AS port FROM citus_shards
      WHERE table_name = 'order_lines'::regclass AND shardid <> get_shard_id_for_distribution_column('order_lines', $1::uuid) LIMIT 1`,
    [tenant],
  );
  await db.workerQuery(c.workers.findIndex((w) => w.port === rows[0]!.port), `DROP POLICY lbmt_tenant_isolation ON ${rows[0]!.shard}`);
  const error = await t.throwsAsync(isolateTenant(db.pool(db.superUrl, { max: 1 }), tenant, { tenancy: db.config }));
  t.true(error instanceof PostureError, String(error));
  t.regex(error!.message, /LBMT_CITUS_SHARD_POLICY_MISSING public\.order_lines/);
});

citusTest('isolateTenant and moveTenant refuse a role under RLS: as the FORCEd owner, Citus would copy no row', async (t) => {
  const c = cluster();
  const db = await createCitusTestDatabase(c, { schema: CITUS_SCHEMA, tenancy: CITUS_TABLES });
  t.teardown(() => db.drop());
  await ownerMayCreate(db); // all Citus needs of the owner
  const tenant = newTenantId();
  await db.superQuery(`INSERT INTO orders (tenant_id, id, item) SELECT $1, g, 'x' FROM generate_series(1, 3) g`, [tenant]);
  const owner = db.pool(db.ownerUrl, { max: 1 });
  const options = { tenancy: db.config };
  await t.throwsAsync(isolateTenant(owner, tenant, options), { code: 'LBMT_CITUS_PLACEMENT_ROLE' });
  const target = c.workers[1]!;
  await t.throwsAsync(moveTenant(owner, tenant, { host: '127.0.0.1', port: target.port }, options), { code: 'LBMT_CITUS_PLACEMENT_ROLE' });
  t.false((await tenantPlacement(owner, tenant, options)).isolated);
  t.is((await db.superQuery('SELECT count(*)::int AS n FROM orders WHERE tenant_id = $1', [tenant])).rows[0].n, 3, 'nothing was copied, nothing lost');
});
