/**
 * The tenant transaction's options and client hygiene on a real Citus cluster: statement timeout,
 * read-only, and a client whose backend dies mid-statement is destroyed, never pooled.
 */
import test from 'ava';
import { tenantQuery, withTenantTransaction } from '../src/index.js';
import { createCitusTestDatabase, CITUS_SCHEMA, CITUS_TABLES, useCitusCluster } from './helpers/citus-db.js';
import { newTenantId } from './helpers/db.js';
import { observePool } from './helpers/observe.js';

const { citusTest, cluster } = useCitusCluster(test);

async function database() {
  const db = await createCitusTestDatabase(cluster(), { schema: CITUS_SCHEMA, tenancy: CITUS_TABLES });
  const tenant = newTenantId();
  await db.superQuery(`INSERT INTO orders (tenant_id, id, item) VALUES ($1, 1, 'x')`, [tenant]);
  return { db, tenant, options: { tenancy: db.config } };
}

citusTest('statementTimeoutMs cancels a distributed statement; readOnly refuses writes', async (t) => {
  const { db, tenant, options } = await database();
  t.teardown(() => db.drop());
  const slow = `SELECT pg_sleep(2) FROM orders WHERE tenant_id = $1`;
  await t.throwsAsync(tenantQuery(db.appPool, tenant, slow, [tenant], { ...options, statementTimeoutMs: 100 }), { code: 'LBMT_STATEMENT_TIMEOUT' });
  await t.throwsAsync(
    withTenantTransaction(db.appPool, tenant, (tx) => tx.query(slow, [tenant]), { ...options, statementTimeoutMs: 100 }),
    { code: 'LBMT_STATEMENT_TIMEOUT' },
  );
  const write = `INSERT INTO orders (tenant_id, id, item) VALUES ($1, 2, 'y')`;
  await t.throwsAsync(tenantQuery(db.appPool, tenant, write, [tenant], { ...options, readOnly: true }), { code: '25006' });
  await t.throwsAsync(withTenantTransaction(db.appPool, tenant, (tx) => tx.query(write, [tenant]), { ...options, readOnly: true }), { code: '25006' });
  const seen = await tenantQuery(db.appPool, tenant, 'SELECT id FROM orders WHERE tenant_id = $1', [tenant], { ...options, readOnly: true });
  t.deepEqual(seen.rows, [{ id: '1' }]);
});

citusTest('a client whose backend is killed mid-statement is destroyed; the pool goes on', async (t) => {
  const { db, tenant, options } = await database();
  t.teardown(() => db.drop());
  const pool = db.pool(db.appUrl, { max: 1 });
  const observed = await observePool(pool);
  const running = tenantQuery(observed.pool, tenant, `SELECT pg_sleep(30) FROM orders WHERE tenant_id = $1`, [tenant], options);
  const outcome = running.then(() => 'finished', (error: Error) => error.message);
  // Wait (with a deadline) for the statement to be running on the coordinator, then kill its backend.
  const deadline = Date.now() + 10_000;
  let killed = false;
  while (!killed && Date.now() < deadline) {
    const { rows } = await db.superQuery(
      `SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity WHERE usename = $1 AND query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()`,
      [db.config.roles.app],
    );
    killed = rows.some((r) => r.done);
    if (!killed) await new Promise((resolve) => setTimeout(resolve, 20));
  }
  t.true(killed);
  t.regex(await outcome, /terminat|Connection/i);
  t.is(observed.counts.destroyed, 1);
  t.is(observed.counts.released, 0);
  const after = await tenantQuery(observed.pool, tenant, 'SELECT count(*)::int AS n FROM orders', [], options);
  t.is(after.rows[0].n, 1);
});
