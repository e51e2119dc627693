/**
 * 10,000 interleaved tenant operations over 20 tenants on a pool of 2 connections, on a real Citus
 * cluster: every result holds only the caller's rows, and at the end each tenant has exactly the
 * rows it wrote. Connections (and their worker connections) are shared by all tenants in turn.
 */
import test from 'ava';
import { tenantQuery, withTenantTransaction } from '../src/index.js';
import { createCitusTestDatabase, CITUS_SCHEMA, CITUS_TABLES, useCitusCluster } from './helpers/citus-db.js';
import { newTenantId } from './helpers/db.js';

const { citusTest, cluster } = useCitusCluster(test);

citusTest('10,000 interleaved operations over 20 tenants on a pool of 2: no foreign row, every write where it belongs', async (t) => {
  const c = cluster();
  t.timeout(10 * 60_000);
  const db = await createCitusTestDatabase(c, { schema: CITUS_SCHEMA, tenancy: CITUS_TABLES, appPoolMax: 2 });
  t.teardown(() => db.drop());
  const options = { tenancy: db.config };
  const tenants = Array.from({ length: 20 }, newTenantId);
  const perTenant = 500;
  const written = new Map(tenants.map((tenant) => [tenant, 0]));
  let operations = 0;
  let rowsChecked = 0;
  const foreign: string[] = [];
  const check = (tenant: string, rows: Array<{ tenant_id: string }>) => {
    for (const row of rows) {
      rowsChecked += 1;
      if (row.tenant_id !== tenant) foreign.push(`${tenant} saw ${row.tenant_id}`);
    }
  };
  // All tenants at once: the pool of 2 hands each connection from tenant to tenant.
  await Promise.all(
    tenants.map(async (tenant, i) => {
      for (let op = 0; op < perTenant; op += 1) {
        operations += 1;
        switch ((i + op) % 5) {
          case 0: {
            await tenantQuery(db.appPool, tenant, `INSERT INTO orders (tenant_id, item) VALUES ($1, $2)`, [tenant, `${i}-${op}`], options);
            written.set(tenant, written.get(tenant)! + 1);
            break;
          }
          case 1: // multi-shard: no filter on the distribution column
            check(tenant, (await tenantQuery(db.appPool, tenant, 'SELECT tenant_id FROM orders', [], options)).rows);
            break;
          case 2: // router
            check(tenant, (await tenantQuery(db.appPool, tenant, 'SELECT tenant_id FROM orders WHERE tenant_id = $1 LIMIT 5', [tenant], options)).rows);
            break;
          case 3: {
            const rows = await withTenantTransaction(db.appPool, tenant, async (tx) => {
              await tx.query(`INSERT INTO order_lines (tenant_id, order_id, line, sku) VALUES ($1, $2, 1, 'x')`, [tenant, op]);
              return (await tx.query('SELECT l.tenant_id FROM order_lines l JOIN orders o USING (tenant_id) LIMIT 20')).rows;
            }, options);
            check(tenant, rows);
            break;
          }
          default: // no tenant at all on the same pool: nothing
            check('(none)', (await db.appPool.query('SELECT tenant_id FROM orders LIMIT 1')).rows);
        }
      }
    }),
  );
  t.is(operations, 10_000);
  t.deepEqual(foreign.slice(0, 5), [], `${foreign.length} foreign rows`);
  t.true(rowsChecked > 50_000, `${rowsChecked} rows checked`);
  const counts = await db.adminPool.query<{ tenant_id: string; n: number }>('SELECT tenant_id, count(*)::int AS n FROM orders GROUP BY tenant_id');
  t.deepEqual(Object.fromEntries(counts.rows.map((r) => [r.tenant_id, r.n])), Object.fromEntries(written));
});
