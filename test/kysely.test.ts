/**
 * linkbay-multitenant/kysely under RLS, as the app role: Kysely queries that forget their WHERE
 * still see one tenant, writes for another tenant are refused, and each query or transaction is
 * one tenant call (counted on the pool).
 */
import test from 'ava';
import type { Generated } from 'kysely';
import { createTenantDb, TenantContext, TenantIsolationError, TenantRequiredError } from '../src/index.js';
import { tenantKysely } from '../src/kysely/index.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA, type TestDatabase } from './helpers/db.js';
import { observePool } from './helpers/observe.js';

interface Database {
  orders: { tenant_id: string; id: Generated<string>; item: string; amount_cents: Generated<number> };
}

async function setup(t: { teardown(fn: () => Promise<void>): void }) {
  const test = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  t.teardown(() => test.drop());
  const [a, b] = [newTenantId(), newTenantId()];
  await test.superQuery(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'a1'), ($1, 'a2'), ($2, 'b1')`, [a, b]);
  const observed = await observePool(test.appPool);
  const db = createTenantDb(observed.pool, { tenancy: test.config });
  return { test, db, a, b, counts: observed.counts, kysely: tenantKysely<Database>(db) };
}

const items = (rows: Array<{ item: string }>) => rows.map((r) => r.item).sort();

test('a selectFrom without WHERE sees only the tenant of the context, in one round trip', async (t) => {
  const { kysely, a, b, counts } = await setup(t);
  const rowsA = await TenantContext.run(a, () => kysely.selectFrom('orders').selectAll().execute());
  t.deepEqual(items(rowsA), ['a1', 'a2']);
  t.deepEqual({ connects: counts.connects, roundTrips: counts.roundTrips }, { connects: 1, roundTrips: 1 });
  const rowsB = await TenantContext.run(b, () => kysely.selectFrom('orders').select('item').execute());
  t.deepEqual(items(rowsB), ['b1']);
});

test('outside any tenant context a query is TenantRequiredError and touches no pool', async (t) => {
  const { kysely, counts } = await setup(t);
  await t.throwsAsync(kysely.selectFrom('orders').selectAll().execute(), { instanceOf: TenantRequiredError });
  t.is(counts.connects, 0);
});

test('a tenant given to tenantKysely is used without a context, canonicalised', async (t) => {
  const { db, a } = await setup(t);
  const kysely = tenantKysely<Database>(db, { tenantId: a.toUpperCase() });
  t.deepEqual(items(await kysely.selectFrom('orders').select('item').execute()), ['a1', 'a2']);
});

test('inserting a row of another tenant is refused by the policy', async (t) => {
  const { kysely, test, a, b } = await setup(t);
  const insert = TenantContext.run(a, () => kysely.insertInto('orders').values({ tenant_id: b, item: 'forged' }).execute());
  await t.throwsAsync(insert, { instanceOf: TenantIsolationError });
  const forged = await test.adminPool.query(`SELECT count(*)::int AS n FROM orders WHERE item = 'forged'`);
  t.is(forged.rows[0].n, 0);
});

test('updates and deletes without WHERE change only the tenant’s rows, and report their count', async (t) => {
  const { kysely, test, a } = await setup(t);
  const [updated] = await TenantContext.run(a, () => kysely.updateTable('orders').set({ item: 'changed' }).execute());
  t.is(updated?.numUpdatedRows, 2n);
  const [deleted] = await TenantContext.run(a, () => kysely.deleteFrom('orders').execute());
  t.is(deleted?.numDeletedRows, 2n);
  const left = await test.adminPool.query('SELECT item FROM orders');
  t.deepEqual(items(left.rows), ['b1']);
});

test('transaction().execute is one tenant transaction: BEGIN rides with the first statement, one COMMIT', async (t) => {
  const { kysely, test, a, counts } = await setup(t);
  const seen = await TenantContext.run(a, () =>
    kysely.transaction().execute(async (trx) => {
      await trx.insertInto('orders').values({ tenant_id: a, item: 'a3' }).execute();
      return trx.selectFrom('orders').select('item').execute();
    }),
  );
  t.deepEqual(items(seen), ['a1', 'a2', 'a3']);
  // One connection, 2 statements + COMMIT: the prelude (BEGIN, tenant) cost no round trip of its own.
  t.deepEqual({ connects: counts.connects, roundTrips: counts.roundTrips, released: counts.released }, { connects: 1, roundTrips: 3, released: 1 });
  t.is((await test.adminPool.query(`SELECT count(*)::int AS n FROM orders WHERE item = 'a3'`)).rows[0].n, 1);
});

test('a throw inside the transaction rolls it back and is rethrown as it was', async (t) => {
  const { kysely, test, a } = await setup(t);
  const boom = new Error('boom');
  const run = TenantContext.run(a, () =>
    kysely.transaction().execute(async (trx) => {
      await trx.insertInto('orders').values({ tenant_id: a, item: 'rolled back' }).execute();
      throw boom;
    }),
  );
  t.is(await t.throwsAsync(run), boom);
  t.is((await test.adminPool.query(`SELECT count(*)::int AS n FROM orders WHERE item = 'rolled back'`)).rows[0].n, 0);
  // The client went back to the pool clean: the next query works on a pool of few connections.
  t.deepEqual(items(await TenantContext.run(a, () => kysely.selectFrom('orders').select('item').execute())), ['a1', 'a2']);
});

test('a read-only transaction refuses writes; an unsupported isolation level is refused before anything is sent', async (t) => {
  const { kysely, a, counts } = await setup(t);
  const write = TenantContext.run(a, () =>
    kysely.transaction().setAccessMode('read only').execute((trx) => trx.insertInto('orders').values({ tenant_id: a, item: 'x' }).execute()),
  );
  const error = await t.throwsAsync<Error & { code?: string }>(write);
  t.is(error?.code, '25006');
  const before = counts.connects;
  await t.throwsAsync(TenantContext.run(a, () => kysely.transaction().setIsolationLevel('read uncommitted').execute(async () => 1)), { instanceOf: TypeError });
  t.is(counts.connects, before);
});

test('savepoints of a controlled transaction roll back part of it', async (t) => {
  const { kysely, test, a } = await setup(t);
  await TenantContext.run(a, async () => {
    const trx = await kysely.startTransaction().execute();
    await trx.insertInto('orders').values({ tenant_id: a, item: 'kept' }).execute();
    const sp = await trx.savepoint('before_drop').execute();
    await sp.deleteFrom('orders').execute();
    await sp.rollbackToSavepoint('before_drop').execute();
    await trx.commit().execute();
  });
  const rows = await test.adminPool.query('SELECT item FROM orders WHERE tenant_id = $1', [a]);
  t.deepEqual(items(rows.rows), ['a1', 'a2', 'kept']);
});

test('concurrent tenants on one Kysely instance and a pool of few connections never cross', async (t) => {
  const { kysely, a, b } = await setup(t);
  const runs = Array.from({ length: 20 }, (_, i) => {
    const tenant = i % 2 === 0 ? a : b;
    return TenantContext.run(tenant, () =>
      kysely.transaction().execute(async (trx) => {
        await new Promise((resolve) => setImmediate(resolve));
        return { tenant, rows: await trx.selectFrom('orders').select('tenant_id').execute() };
      }),
    );
  });
  for (const { tenant, rows } of await Promise.all(runs)) {
    t.true(rows.length > 0 && rows.every((r) => r.tenant_id === tenant));
  }
});

test('while a tenant move holds the write key, a Kysely transaction reads and its write is TenantMovingError (503), not a raw 25006', async (t) => {
  const { test: db, kysely, a } = await setup(t);
  // What a move's runner holds (src/write-gate.ts): the tenant's write key, exclusively.
  const mover = db.pool(db.superUrl, { max: 1 });
  const holder = await mover.connect();
  t.teardown(async () => {
    holder.release();
    await mover.end();
  });
  await holder.query('BEGIN');
  await holder.query(`SELECT pg_advisory_xact_lock(hashtextextended('linkbay-writes:' || $1, 0))`, [a]);
  let read: string[] = [];
  const error = await t.throwsAsync(
    TenantContext.run(a, () =>
      kysely.transaction().execute(async (trx) => {
        read = items(await trx.selectFrom('orders').select('item').execute());
        await trx.insertInto('orders').values({ tenant_id: a, item: 'during the move' }).execute();
      }),
    ),
  );
  t.deepEqual(read, ['a1', 'a2'], 'reads are served');
  t.is((error as { code?: string }).code, 'LBMT_TENANT_MOVING');
  t.is((error as { status?: number }).status, 503);
  // The same answer through a single statement and the pipelined mode (each its own transaction).
  const insert = `INSERT INTO orders (tenant_id, item) VALUES ($1, 'during the move')`;
  await t.throwsAsync(createTenantDb(db.appPool, { tenancy: db.config }).tenantQuery(a, insert, [a]), { code: 'LBMT_TENANT_MOVING' });
  const pipelined = createTenantDb(db.appPool, { tenancy: db.config, pipeline: { connections: 1 } });
  await t.throwsAsync(pipelined.tenantQuery(a, insert, [a]), { code: 'LBMT_TENANT_MOVING' });
  t.is((await pipelined.tenantQuery(a, 'SELECT count(*)::int AS n FROM orders')).rows[0].n, 2, 'pipelined reads are served');
  await holder.query('ROLLBACK');
  await TenantContext.run(a, () => kysely.insertInto('orders').values({ tenant_id: a, item: 'after' }).execute());
  t.pass('writes again once the key is released');
});
