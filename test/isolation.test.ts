/**
 * The promise itself, against PITFALLS.md: a tenant never sees or writes another tenant's rows,
 * whatever the application code forgets. Application queries run as the generated app role.
 */
import test from 'ava';
import pg from 'pg';
import { TenantContext, TenantIsolationError, tenantQuery, TransactionEndedError, withTenantTransaction, type TenancyInput } from '../src/index.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA, type TestDatabase } from './helpers/db.js';
import { observePool } from './helpers/observe.js';
import { waitFor } from './helpers/wait.js';

async function ordersDatabase(t: { teardown(fn: () => Promise<void>): void }, appPoolMax = 2): Promise<TestDatabase> {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] }, appPoolMax });
  t.teardown(() => db.drop());
  return db;
}

test('50 tenants interleaving on a pool of 2 each see only their own rows', async (t) => {
  const db = await ordersDatabase(t, 2);
  const tenants = Array.from({ length: 50 }, newTenantId);
  const rounds = 10;
  let checks = 0;
  const work = tenants.map(async (tenant, i) => {
    for (let round = 0; round < rounds; round += 1) {
      // Alternate the three entry points so every path is interleaved with every other.
      if ((i + round) % 3 === 0) {
        await tenantQuery(db.appPool, tenant, `INSERT INTO orders (tenant_id, item) VALUES ($1, $2)`, [tenant, `${i}-${round}`]);
      } else if ((i + round) % 3 === 1) {
        await withTenantTransaction(db.appPool, tenant, async (tx) => {
          await tx.query(`INSERT INTO orders (tenant_id, item) VALUES ($1, $2)`, [tenant, `${i}-${round}`]);
          await new Promise((resolve) => setImmediate(resolve)); // let other tenants run in between
          const seen = await tx.query<{ tenant_id: string; item: string }>('SELECT tenant_id, item FROM orders');
          for (const row of seen.rows) {
            checks += 1;
            if (row.tenant_id !== tenant || !row.item.startsWith(`${i}-`)) throw new Error(`tenant ${i} saw ${row.item}`);
          }
        });
      } else {
        await TenantContext.run(tenant, () =>
          withTenantTransaction(db.appPool, undefined, (tx) => tx.query(`INSERT INTO orders (tenant_id, item) VALUES ($1, $2)`, [tenant, `${i}-${round}`])),
        );
      }
      const { rows } = await tenantQuery<{ tenant_id: string; item: string }>(db.appPool, tenant, 'SELECT tenant_id, item FROM orders');
      t.is(rows.length, round + 1, `tenant ${i} round ${round}`);
      for (const row of rows) {
        checks += 1;
        if (row.tenant_id !== tenant || !row.item.startsWith(`${i}-`)) t.fail(`tenant ${i} saw ${row.item}`);
      }
    }
  });
  await Promise.all(work);
  t.true(checks > 2_000, `${checks} row checks`);
  const total = await db.adminPool.query('SELECT count(*)::int AS n FROM orders');
  t.is(total.rows[0].n, tenants.length * rounds);
});

test('with no tenant set nothing is visible and nothing can be written', async (t) => {
  const db = await ordersDatabase(t);
  const a = newTenantId();
  await db.superQuery(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'a1')`, [a]);
  // A fresh connection: the setting was never defined (NULL).
  t.is((await db.appPool.query(`SELECT current_setting('app.tenant_id', true) AS s`)).rows[0].s, null);
  t.is((await db.appPool.query('SELECT * FROM orders')).rowCount, 0);
  const insert = await t.throwsAsync<pg.DatabaseError>(db.appPool.query(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'x')`, [a]));
  t.is(insert?.code, '42501');
  t.is((await db.appPool.query(`UPDATE orders SET item = 'x'`)).rowCount, 0);
  t.is((await db.appPool.query('DELETE FROM orders')).rowCount, 0);
  t.is((await db.adminPool.query('SELECT count(*)::int AS n FROM orders')).rows[0].n, 1);
});

test("after the library's tenant transaction and tenant query, the same connection sees '' and nothing: the setting was local", async (t) => {
  const db = await ordersDatabase(t, 1); // one connection: the next borrower gets the session the library used
  const a = newTenantId();
  await db.superQuery(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'a1')`, [a]);
  const pid = await withTenantTransaction(db.appPool, a, async (tx) => {
    t.is((await tx.query('SELECT * FROM orders')).rowCount, 1, 'the tenant sees its row');
    return (await tx.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
  });
  t.is((await tenantQuery(db.appPool, a, 'SELECT count(*)::int AS n FROM orders')).rows[0].n, 1);
  const client = await db.appPool.connect();
  try {
    t.is((await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid, pid, 'the session the library used');
    // A session-level set_config would still hold the tenant here (PITFALLS 6); a local one leaves ''
    // (PITFALLS 11), which the policy turns into no tenant: no cast error, no rows.
    t.is((await client.query(`SELECT current_setting('app.tenant_id', true) AS s`)).rows[0].s, '');
    t.is((await client.query('SELECT * FROM orders')).rowCount, 0);
    const insert = await t.throwsAsync<pg.DatabaseError>(client.query(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'x')`, [a]));
    t.is(insert?.code, '42501');
    t.is((await client.query(`UPDATE orders SET item = 'x'`)).rowCount, 0);
    t.is((await client.query('DELETE FROM orders')).rowCount, 0);
  } finally {
    client.release();
  }
  t.is((await db.adminPool.query('SELECT count(*)::int AS n FROM orders')).rows[0].n, 1);
});

test('a user-added permissive USING (true) policy does not widen access', async (t) => {
  const db = await ordersDatabase(t);
  const a = newTenantId();
  const b = newTenantId();
  await db.superQuery(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'a1'), ($2, 'b1')`, [a, b]);
  await db.superQuery(`CREATE POLICY everyone ON orders AS PERMISSIVE FOR ALL TO PUBLIC USING (true) WITH CHECK (true)`);
  const rows = await tenantQuery(db.appPool, a, 'SELECT item FROM orders');
  t.deepEqual(rows.rows, [{ item: 'a1' }]);
  t.is((await db.appPool.query('SELECT * FROM orders')).rowCount, 0);
  await t.throwsAsync(tenantQuery(db.appPool, a, `INSERT INTO orders (tenant_id, item) VALUES ($1, 'forged')`, [b]), {
    instanceOf: TenantIsolationError,
  });
});

test('the table owner is subject to the policies too (FORCE)', async (t) => {
  const db = await ordersDatabase(t);
  const a = newTenantId();
  await db.superQuery(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'a1')`, [a]);
  const owner = db.pool(db.ownerUrl, { max: 1 });
  t.is((await owner.query('SELECT * FROM orders')).rowCount, 0);
  t.is((await tenantQuery(owner, a, 'SELECT * FROM orders')).rowCount, 1);
});

test('a backend killed mid-transaction gives a clear error, the client is destroyed and the pool recovers', async (t) => {
  const db = await ordersDatabase(t, 1);
  const a = newTenantId();
  const { pool, counts } = await observePool(db.appPool);
  const error = await t.throwsAsync(
    withTenantTransaction(pool, a, async (tx) => {
      await tx.query(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'doomed')`, [a]);
      const { rows } = await tx.query('SELECT pg_backend_pid() AS pid');
      await db.superQuery('SELECT pg_terminate_backend($1)', [rows[0].pid]);
      await tx.query('SELECT 1');
    }),
  );
  t.truthy(error);
  t.regex(String(error?.message), /terminat|Connection|closed|ended/i);
  t.is(counts.destroyed, 1, 'the broken client is not returned to the pool');
  // The pool (max 1) hands out a fresh, working connection, and nothing was committed.
  const after = await tenantQuery(db.appPool, a, 'SELECT count(*)::int AS n FROM orders');
  t.is(after.rows[0].n, 0);
});

test('a backend killed during tenantQuery gives an error and the pool recovers', async (t) => {
  const db = await ordersDatabase(t, 1);
  const a = newTenantId();
  const pidQuery = db.appPool.query('SELECT pg_backend_pid() AS pid');
  const pid = (await pidQuery).rows[0].pid;
  const slow = tenantQuery(db.appPool, a, 'SELECT pg_sleep(5) AS killed_while_sleeping');
  await waitFor(
    async () => (await db.superQuery(`SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query LIKE '%killed_while_sleeping%'`, [pid])).rowCount,
    { message: 'the statement is running' },
  );
  await db.superQuery('SELECT pg_terminate_backend($1)', [pid]);
  await t.throwsAsync(slow);
  t.is((await tenantQuery(db.appPool, a, 'SELECT 1 AS one')).rows[0].one, 1);
});

test('a COMMIT inside fn ends the tenant transaction: what follows is refused and the client destroyed', async (t) => {
  const db = await ordersDatabase(t, 1);
  const a = newTenantId();
  const { pool, counts } = await observePool(db.appPool);
  // After COMMIT, a session-level set_config would survive into the next borrower's session and
  // plain queries there would run as this tenant (PITFALLS 6, 9).
  const error = await t.throwsAsync(
    withTenantTransaction(pool, a, async (tx) => {
      await tx.query('SELECT 1');
      await tx.query('COMMIT');
      await tx.query(`SELECT set_config('app.tenant_id', $1, false)`, [a]);
    }),
    { instanceOf: TransactionEndedError },
  );
  t.is(error?.code, 'LBMT_TRANSACTION_ENDED');
  t.is(counts.destroyed, 1);
  t.is(counts.released, 0);
  const next = await db.appPool.query(`SELECT current_setting('app.tenant_id', true) AS s`);
  t.falsy(next.rows[0].s, 'the next borrower does not inherit the tenant');
});

test('a COMMIT as the last statement of fn is detected too', async (t) => {
  const db = await ordersDatabase(t, 1);
  const a = newTenantId();
  const { pool, counts } = await observePool(db.appPool);
  await t.throwsAsync(
    withTenantTransaction(pool, a, async (tx) => {
      await tx.query('SELECT 1');
      await tx.query('COMMIT');
    }),
    { instanceOf: TransactionEndedError },
  );
  t.is(counts.destroyed, 1);
});

const typed: Array<[string, TenancyInput['tenantIdType'], string, () => string]> = [
  ['text', 'text', 'text', () => `acme-${Math.random().toString(36).slice(2, 8)}`],
  ['bigint', 'bigint', 'bigint', () => String(1 + Math.floor(Math.random() * 1e12))],
];
for (const [label, tenantIdType, sqlType, make] of typed) {
  test(`${label} tenant ids isolate end to end`, async (t) => {
    const db = await createTestDatabase({
      schema: `CREATE TABLE notes (tenant_id ${sqlType} NOT NULL, body text NOT NULL)`,
      tenancy: { tenantIdType, tables: ['notes'] },
    });
    t.teardown(() => db.drop());
    const [a, b] = [make(), make()];
    const options = { tenancy: db.config };
    await tenantQuery(db.appPool, a, 'INSERT INTO notes VALUES ($1, $2)', [a, 'for a'], options);
    await tenantQuery(db.appPool, b, 'INSERT INTO notes VALUES ($1, $2)', [b, 'for b'], options);
    const seen = await tenantQuery(db.appPool, a.toUpperCase(), 'SELECT body FROM notes', [], options);
    t.deepEqual(seen.rows, [{ body: 'for a' }]);
    t.is((await db.appPool.query('SELECT * FROM notes')).rowCount, 0);
  });
}
