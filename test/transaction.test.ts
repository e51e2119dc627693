import anyTest, { type TestFn } from 'ava';
import pg from 'pg';
import {
  InvalidTenantIdError,
  TenantContext,
  TenantIsolationError,
  TenantMismatchError,
  TenantRequiredError,
  TransactionAbortedError,
  TransactionClosedError,
  tenantQuery,
  withTenantTransaction,
  type TenantTransaction, TenantLimitError } from '../src/index.js';
import { MAX_PREPARED_PER_CONNECTION } from '../src/pipeline.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA, type TestDatabase } from './helpers/db.js';
import { observePool } from './helpers/observe.js';

const test = anyTest as TestFn<{ db: TestDatabase; a: string; b: string }>;

test.before(async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] }, appPoolMax: 2 });
  const a = newTenantId();
  const b = newTenantId();
  await db.superQuery(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'a1'), ($1, 'a2'), ($2, 'b1')`, [a, b]);
  t.context = { db, a, b };
});

test.after.always(async (t) => {
  await t.context.db?.drop();
});

const tenantIdOf = `SELECT current_setting('app.tenant_id', true) AS tenant`;

test('tenantQuery sees only its tenant rows even without a WHERE', async (t) => {
  const { db, a, b } = t.context;
  const ra = await tenantQuery(db.appPool, a, 'SELECT item FROM orders ORDER BY item');
  const rb = await tenantQuery(db.appPool, b, 'SELECT item FROM orders ORDER BY item');
  t.deepEqual(ra.rows.map((r) => r.item), ['a1', 'a2']);
  t.deepEqual(rb.rows.map((r) => r.item), ['b1']);
});

test('tenantQuery costs one round trip and leaves the connection idle with no tenant', async (t) => {
  const { db, a } = t.context;
  const { pool, counts } = await observePool(db.appPool);
  const result = await tenantQuery(pool, a, 'SELECT count(*)::int AS n FROM orders');
  t.is(result.rows[0].n, 2);
  t.is(counts.roundTrips, 1);
  t.is(counts.released, 1);
  const after = await withClientOf(db.appPool, (c) => c.query(tenantIdOf));
  t.true(after.rows.every((r) => !r.tenant), 'the setting does not outlive the statement');
});

test('a transaction of k statements costs k + 1 round trips', async (t) => {
  const { db, a } = t.context;
  for (const k of [1, 3]) {
    const { pool, counts } = await observePool(db.appPool);
    await withTenantTransaction(pool, a, async (tx) => {
      for (let i = 0; i < k; i += 1) await tx.query('SELECT count(*) FROM orders');
    });
    t.is(counts.roundTrips, k + 1, `k = ${k}`);
  }
});

test('a transaction that sends nothing costs no round trip', async (t) => {
  const { db, a } = t.context;
  const { pool, counts } = await observePool(db.appPool);
  t.is(await withTenantTransaction(pool, a, () => 'nothing'), 'nothing');
  t.is(counts.roundTrips, 0);
  t.is(counts.released, 1);
});

test('the tenant setting is transaction-local: set inside, gone after commit', async (t) => {
  const { db, a } = t.context;
  const inside = await withTenantTransaction(db.appPool, a, async (tx) => (await tx.query(tenantIdOf)).rows[0].tenant);
  t.is(inside, a);
  const after = await withClientOf(db.appPool, (c) => c.query(tenantIdOf));
  t.falsy(after.rows[0].tenant);
});

test('a throw in fn rolls back, rethrows, and returns a clean client', async (t) => {
  const { db, a } = t.context;
  const { pool, counts } = await observePool(db.appPool);
  const boom = new Error('boom');
  const error = await t.throwsAsync(
    withTenantTransaction(pool, a, async (tx) => {
      await tx.query(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'rolled-back')`, [a]);
      throw boom;
    }),
  );
  t.is(error, boom);
  t.is(counts.released, 1);
  t.is(counts.destroyed, 0);
  const rows = await tenantQuery(db.appPool, a, `SELECT 1 FROM orders WHERE item = 'rolled-back'`);
  t.is(rows.rowCount, 0);
});

test('a failed statement caught inside fn makes the transaction fail instead of silently committing nothing', async (t) => {
  const { db, a } = t.context;
  await t.throwsAsync(
    withTenantTransaction(db.appPool, a, async (tx) => {
      await tx.query(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'lost')`, [a]);
      await tx.query('SELECT 1/0').catch(() => undefined);
    }),
    { instanceOf: TransactionAbortedError },
  );
  t.is((await tenantQuery(db.appPool, a, `SELECT 1 FROM orders WHERE item = 'lost'`)).rowCount, 0);
});

test('the handle is unusable after fn settles', async (t) => {
  const { db, a } = t.context;
  let leaked: TenantTransaction | undefined;
  await withTenantTransaction(db.appPool, a, async (tx) => {
    leaked = tx;
    await tx.query('SELECT 1');
  });
  await t.throwsAsync(leaked!.query('SELECT 1'), { instanceOf: TransactionClosedError });
});

test('a nested call for the same tenant joins the transaction', async (t) => {
  const { db, a } = t.context;
  const { pool, counts } = await observePool(db.appPool);
  const seen = await withTenantTransaction(pool, a, async (tx) => {
    await tx.query(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'nested')`, [a]);
    const inner = await withTenantTransaction(pool, a, async (inner) => (await inner.query(`SELECT 1 FROM orders WHERE item = 'nested'`)).rowCount);
    const single = await tenantQuery(pool, a, `SELECT 1 FROM orders WHERE item = 'nested'`);
    throw Object.assign(new Error('rollback'), { seen: [inner, single.rowCount] });
  }).catch((error) => error.seen);
  t.deepEqual(seen, [1, 1], 'the uncommitted row is visible to the nested calls');
  t.is(counts.connects, 1, 'one connection for all of it');
});

test('a nested call cannot change the open transaction, and its options are still validated', async (t) => {
  const { db, a } = t.context;
  await t.throwsAsync(
    withTenantTransaction(db.appPool, a, async () => withTenantTransaction(db.appPool, a, async () => 1, { readOnly: true })),
    { instanceOf: TypeError, message: /readOnly/ },
  );
  await t.throwsAsync(
    withTenantTransaction(db.appPool, a, async () => tenantQuery(db.appPool, a, 'SELECT 1', [], { statementTimeoutMs: 5 })),
    { instanceOf: TypeError, message: /statementTimeoutMs/ },
  );
  await t.throwsAsync(
    withTenantTransaction(db.appPool, a, async () => withTenantTransaction(db.appPool, a, async () => 1, { isolationLevel: 'bogus' as never })),
    { instanceOf: TypeError, message: /isolationLevel/ },
  );
});

test('savepoint rolls back its own work and leaves the transaction usable', async (t) => {
  const { db, a } = t.context;
  const items = await withTenantTransaction(db.appPool, a, async (tx) => {
    await tx.query(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'sp-kept')`, [a]);
    await t.throwsAsync(
      tx.savepoint(async (inner) => {
        await inner.query(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'sp-undone')`, [a]);
        await inner.query('SELECT 1/0');
      }),
    );
    const nested = await tx.savepoint(async (inner) => (await inner.query(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'sp-released') RETURNING item`, [a])).rows[0].item);
    t.is(nested, 'sp-released');
    const { rows } = await tx.query(`SELECT item FROM orders WHERE item LIKE 'sp-%' ORDER BY item`);
    throw Object.assign(new Error('roll back the test rows'), { items: rows.map((r) => r.item) });
  }).catch((error) => error.items);
  t.deepEqual(items, ['sp-kept', 'sp-released']);
});

test("a nested call's own guard applies to the joined transaction", async (t) => {
  const { db, a } = t.context;
  const refuseDeletes = { check: (text: string) => {
    if (/^\s*delete/i.test(text)) throw new Error('refused by the nested guard');
  } };
  await t.throwsAsync(
    withTenantTransaction(db.appPool, a, async () => tenantQuery(db.appPool, a, 'DELETE FROM orders', [], { guard: refuseDeletes })),
    { message: 'refused by the nested guard' },
  );
  await t.throwsAsync(
    withTenantTransaction(db.appPool, a, async () => withTenantTransaction(db.appPool, a, (tx) => tx.savepoint((inner) => inner.query('DELETE FROM orders')), { guard: refuseDeletes })),
    { message: 'refused by the nested guard' },
  );
  t.true((await tenantQuery(db.appPool, a, 'SELECT count(*)::int AS n FROM orders')).rows[0].n >= 2);
});

test('a nested call for another tenant is an error', async (t) => {
  const { db, a, b } = t.context;
  await t.throwsAsync(
    withTenantTransaction(db.appPool, a, async () => withTenantTransaction(db.appPool, b, async () => 1)),
    { instanceOf: TenantMismatchError },
  );
  await t.throwsAsync(
    withTenantTransaction(db.appPool, a, async () => tenantQuery(db.appPool, b, 'SELECT 1')),
    { instanceOf: TenantMismatchError },
  );
});

test('an invalid tenant id is refused before the pool is touched', async (t) => {
  const { db } = t.context;
  const { pool, counts } = await observePool(db.appPool);
  await t.throwsAsync(tenantQuery(pool, 'not-a-uuid', 'SELECT 1'), { instanceOf: InvalidTenantIdError });
  await t.throwsAsync(withTenantTransaction(pool, "x' OR 1=1 --", async () => 1), { instanceOf: InvalidTenantIdError });
  t.is(counts.connects, 0);
});

test('UUID spellings are canonicalised before set_config', async (t) => {
  const { db, a } = t.context;
  const { rows } = await tenantQuery(db.appPool, `{${a.toUpperCase()}}`, tenantIdOf);
  t.is(rows[0].tenant, a);
});

test('without a tenant id the TenantContext tenant is used, and none at all is TenantRequiredError', async (t) => {
  const { db, a } = t.context;
  const { pool, counts } = await observePool(db.appPool);
  const inContext = await TenantContext.run(a, () => tenantQuery(pool, undefined, tenantIdOf));
  t.is(inContext.rows[0].tenant, a);
  await t.throwsAsync(withTenantTransaction(pool, undefined, async () => 1), { instanceOf: TenantRequiredError });
  t.is(counts.connects, 1);
});

test('readOnly refuses writes', async (t) => {
  const { db, a } = t.context;
  const error = await t.throwsAsync<pg.DatabaseError>(
    withTenantTransaction(db.appPool, a, (tx) => tx.query(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'ro')`, [a]), { readOnly: true }),
  );
  t.is(error?.code, '25006');
  const single = await t.throwsAsync<pg.DatabaseError>(
    tenantQuery(db.appPool, a, `INSERT INTO orders (tenant_id, item) VALUES ($1, 'ro')`, [a], { readOnly: true }),
  );
  t.is(single?.code, '25006');
});

test('isolationLevel sets the transaction isolation', async (t) => {
  const { db, a } = t.context;
  const level = await withTenantTransaction(db.appPool, a, async (tx) => (await tx.query('SHOW transaction_isolation')).rows[0].transaction_isolation, {
    isolationLevel: 'serializable',
  });
  t.is(level, 'serializable');
  await t.throwsAsync(withTenantTransaction(db.appPool, a, async () => 1, { isolationLevel: 'chaos' as never }), { instanceOf: TypeError });
});

test('statementTimeoutMs cancels a slow statement and does not outlive the transaction', async (t) => {
  const { db, a } = t.context;
  const error = await t.throwsAsync(withTenantTransaction(db.appPool, a, (tx) => tx.query('SELECT pg_sleep(2)'), { statementTimeoutMs: 50 }), {
    instanceOf: TenantLimitError,
  });
  t.is(error?.code, 'LBMT_STATEMENT_TIMEOUT');
  t.is((error?.cause as pg.DatabaseError).code, '57014', 'the server error is kept as the cause');
  const timeout = await tenantQuery(db.appPool, a, 'SHOW statement_timeout', [], { statementTimeoutMs: 1234 });
  t.is(timeout.rows[0].statement_timeout, '1234ms');
  const after = await withClientOf(db.appPool, (c) => c.query('SHOW statement_timeout'));
  t.is(after.rows[0].statement_timeout, '0');
});

test('writing another tenant row is refused with TenantIsolationError', async (t) => {
  const { db, a, b } = t.context;
  await t.throwsAsync(tenantQuery(db.appPool, a, `INSERT INTO orders (tenant_id, item) VALUES ($1, 'forged')`, [b]), {
    instanceOf: TenantIsolationError,
  });
  await t.throwsAsync(tenantQuery(db.appPool, a, `UPDATE orders SET tenant_id = $1 WHERE item = 'a1'`, [b]), {
    instanceOf: TenantIsolationError,
  });
  const updated = await tenantQuery(db.appPool, a, `UPDATE orders SET item = 'stolen' WHERE tenant_id = $1`, [b]);
  t.is(updated.rowCount, 0);
  const deleted = await tenantQuery(db.appPool, a, `DELETE FROM orders WHERE tenant_id = $1`, [b]);
  t.is(deleted.rowCount, 0);
  t.is((await db.adminPool.query(`SELECT 1 FROM orders WHERE tenant_id = $1 AND item = 'b1'`, [b])).rowCount, 1);
});

test('a statement error is reported and the connection goes back to the pool clean', async (t) => {
  const { db, a } = t.context;
  const { pool, counts } = await observePool(db.appPool);
  const error = await t.throwsAsync<pg.DatabaseError>(tenantQuery(pool, a, 'SELECT no_such_column FROM orders'));
  t.is(error?.code, '42703');
  t.is(counts.released, 1);
  t.is(counts.destroyed, 0);
  t.is((await tenantQuery(pool, a, 'SELECT count(*)::int AS n FROM orders')).rows[0].n >= 2, true);
});

test('prepared statements recover after a failed parse and after an execution error', async (t) => {
  const { db, a } = t.context;
  const pool = db.pool(db.appUrl, { max: 1 });
  const all = { prepare: 'all' } as const;
  await t.throwsAsync(tenantQuery(pool, a, 'SELEC 1', [], all));
  await t.throwsAsync(tenantQuery(pool, a, 'SELECT 1/(count(*) - count(*)) FROM orders', [], all));
  const again = await tenantQuery(pool, a, 'SELECT (1/(count(*) - count(*) + 1))::int AS one FROM orders', [], all);
  t.is(again.rows[0].one, 1);
  // the statement that failed at execution is usable again on the same connection
  await t.throwsAsync(tenantQuery(pool, a, 'SELECT 1/(count(*) - count(*)) FROM orders', [], all));
  const count = await tenantQuery(pool, a, 'SELECT count(*)::int AS n FROM orders', [], all);
  t.true(count.rows[0].n >= 2);
});

test('prepared statements dropped behind our back (DEALLOCATE ALL) fail once, keep the client, then recover', async (t) => {
  const { db, a } = t.context;
  const pool = db.pool(db.appUrl, { max: 1 });
  const { pool: observed, counts } = await observePool(pool);
  await withTenantTransaction(observed, a, (tx) => tx.query('SELECT 1'));
  await withClientOf(pool, (c) => c.query('DEALLOCATE ALL'));
  const error = await t.throwsAsync<pg.DatabaseError>(withTenantTransaction(observed, a, (tx) => tx.query('SELECT 1')));
  t.is(error?.code, '26000', 'the named BEGIN no longer exists');
  t.is(counts.destroyed, 0, 'BEGIN failed before any transaction began: the session is clean and stays pooled');
  const again = await withTenantTransaction(observed, a, async (tx) => (await tx.query(tenantIdOf)).rows[0].tenant);
  t.is(again, a);
  t.is(counts.connects, 3);
  t.is(counts.destroyed, 0);
});

test('named statements per connection stay bounded', async (t) => {
  const { db, a } = t.context;
  const pool = db.pool(db.appUrl, { max: 1 });
  for (let i = 0; i < MAX_PREPARED_PER_CONNECTION + 20; i += 1) {
    await tenantQuery(pool, a, `SELECT ${i} AS i`, [], { prepare: 'all' });
  }
  const { rows } = await tenantQuery(pool, a, 'SELECT count(*)::int AS n FROM pg_prepared_statements', [], { prepare: 'all' });
  t.true(rows[0].n <= MAX_PREPARED_PER_CONNECTION, `${rows[0].n} prepared`);
});

test("by default every statement is named per plan class; 'all' names it once for every tenant", async (t) => {
  const { db, a } = t.context;
  const pool = db.pool(db.appUrl, { max: 1 });
  const named = async () =>
    (await tenantQuery(pool, a, 'SELECT name, statement FROM pg_prepared_statements ORDER BY statement', [], { prepare: 'none' })).rows as Array<{ name: string; statement: string }>;
  await withTenantTransaction(pool, a, (tx) => tx.query('SELECT 1 AS default_mode'));
  await tenantQuery(pool, a, 'SELECT count(*) AS default_mode FROM orders WHERE item <> $1', ['x']);
  const byDefault = await named();
  t.true(byDefault.some((r) => r.statement.startsWith('BEGIN')));
  t.true(byDefault.some((r) => r.statement.includes('set_config')));
  const mine = byDefault.filter((r) => r.statement.includes('default_mode'));
  t.is(mine.length, 2, 'with and without parameters: named, parsed once');
  for (const r of mine) t.regex(r.name, /^lbmt_[0-9a-f]{20}_[0-9a-f]{6}/, 'with the plan class in the name (test/plan-classes.test.ts)');
  await tenantQuery(pool, a, 'SELECT 3 AS all_mode', [], { prepare: 'all' });
  await tenantQuery(pool, a, 'SELECT 4 AS all_mode', [], { prepare: true });
  const all = (await named()).filter((r) => r.statement.includes('all_mode'));
  t.is(all.length, 2);
  for (const r of all) t.regex(r.name, /^lbmt_[0-9a-f]{20}$/, 'one name for every tenant');
  await t.throwsAsync(tenantQuery(pool, a, 'SELECT 1', [], { prepare: 'sometimes' as never }), { instanceOf: TypeError });
});

test('prepare: false sends unnamed statements only', async (t) => {
  const { db, a } = t.context;
  const pool = db.pool(db.appUrl, { max: 1 });
  await withTenantTransaction(pool, a, async (tx) => {
    await tx.query('SELECT 1');
    await tx.query('SELECT 2');
  }, { prepare: false });
  const { rows } = await tenantQuery(pool, a, 'SELECT count(*)::int AS n FROM pg_prepared_statements', [], { prepare: false });
  t.is(rows[0].n, 0);
});

test('a pg pool in pipeline mode works and stays isolated', async (t) => {
  const { db, a, b } = t.context;
  const pool = db.pool(db.appUrl, { max: 1, pipeline: true } as pg.PoolConfig);
  const ra = await tenantQuery(pool, a, 'SELECT item FROM orders ORDER BY item');
  t.deepEqual(ra.rows.map((r) => r.item).filter((i) => i.startsWith('a')), ['a1', 'a2']);
  const items = await withTenantTransaction(pool, b, async (tx) => (await tx.query('SELECT item FROM orders')).rows.map((r) => r.item));
  t.deepEqual(items, ['b1']);
});

test('rowMode and query config objects pass through', async (t) => {
  const { db, a } = t.context;
  const result = await tenantQuery(db.appPool, a, { text: 'SELECT $1::int AS x, $2::text AS y', values: [7, 'z'], rowMode: 'array' });
  t.deepEqual(result.rows, [[7, 'z']]);
  t.deepEqual(result.fields.map((f) => f.name), ['x', 'y']);
});

async function withClientOf<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    return await fn(client);
  } finally {
    client.release();
  }
}
