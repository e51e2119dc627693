/**
 * linkbay-multitenant/drizzle under RLS, as the app role: Drizzle queries that forget their WHERE
 * still see one tenant, writes for another tenant are refused, and each query or transaction is
 * one tenant call (counted on the pool).
 */
import test from 'ava';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { bigint, integer, pgTable, text, uuid } from 'drizzle-orm/pg-core';
import { createTenantDb, TenantContext, TenantIsolationError, TenantRequiredError, TransactionEndedError } from '../src/index.js';
import { tenantDrizzle, withTenantDrizzle } from '../src/drizzle/index.js';
import { problemFor } from '../src/koa/problem.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA } from './helpers/db.js';
import { observePool } from './helpers/observe.js';

const orders = pgTable('orders', {
  tenantId: uuid('tenant_id').notNull(),
  id: bigint('id', { mode: 'number' }).generatedAlwaysAsIdentity(),
  item: text('item').notNull(),
  amountCents: integer('amount_cents').notNull().default(0),
});

async function setup(t: { teardown(fn: () => Promise<void>): void }) {
  const test = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  t.teardown(() => test.drop());
  const [a, b] = [newTenantId(), newTenantId()];
  await test.superQuery(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'a1'), ($1, 'a2'), ($2, 'b1')`, [a, b]);
  const observed = await observePool(test.appPool);
  const db = createTenantDb(observed.pool, { tenancy: test.config });
  return { test, db, a, b, counts: observed.counts, orm: tenantDrizzle(db) };
}

/** Drizzle wraps driver errors in DrizzleQueryError (whose message quotes the parameters); the library's error is its cause. */
const cause = (error: unknown) => (error as { cause?: unknown } | undefined)?.cause ?? error;

const items = (rows: Array<{ item: string }>) => rows.map((r) => r.item).sort();

test('a select without WHERE sees only the tenant of the context, in one round trip', async (t) => {
  const { orm, a, b, counts } = await setup(t);
  t.deepEqual(items(await TenantContext.run(a, () => orm.select().from(orders).execute())), ['a1', 'a2']);
  t.deepEqual({ connects: counts.connects, roundTrips: counts.roundTrips }, { connects: 1, roundTrips: 1 });
  t.deepEqual(items(await TenantContext.run(b, () => orm.select({ item: orders.item }).from(orders).execute())), ['b1']);
});

test('outside any tenant context a query is TenantRequiredError and touches no pool', async (t) => {
  const { orm, counts } = await setup(t);
  t.true(cause(await t.throwsAsync(orm.select().from(orders).execute())) instanceof TenantRequiredError);
  await t.throwsAsync(orm.transaction(async (tx) => tx.select().from(orders)), { instanceOf: TenantRequiredError });
  t.is(counts.connects, 0);
});

test('inserting a row of another tenant is refused by the policy', async (t) => {
  const { orm, test, a, b } = await setup(t);
  const refused = await t.throwsAsync(TenantContext.run(a, () => orm.insert(orders).values({ tenantId: b, item: 'forged' }).execute()));
  t.true(cause(refused) instanceof TenantIsolationError);
  // Drizzle's wrapper answers as the library's error: 403, not a 500, and no parameter in the body.
  t.deepEqual(problemFor(refused), { status: 403, detail: undefined, code: 'LBMT_ISOLATION_VIOLATION' });
  t.is((await test.adminPool.query(`SELECT count(*)::int AS n FROM orders WHERE item = 'forged'`)).rows[0].n, 0);
});

test('transaction(fn) is one tenant transaction: BEGIN rides with the first statement, one COMMIT', async (t) => {
  const { orm, test, a, counts } = await setup(t);
  const seen = await TenantContext.run(a, () =>
    orm.transaction(async (tx) => {
      await tx.insert(orders).values({ tenantId: a, item: 'a3' });
      return tx.select({ item: orders.item }).from(orders);
    }),
  );
  t.deepEqual(items(seen), ['a1', 'a2', 'a3']);
  t.deepEqual({ connects: counts.connects, roundTrips: counts.roundTrips, released: counts.released }, { connects: 1, roundTrips: 3, released: 1 });
  t.is((await test.adminPool.query(`SELECT count(*)::int AS n FROM orders WHERE item = 'a3'`)).rows[0].n, 1);
});

test('a throw rolls the transaction back; a nested transaction is a savepoint', async (t) => {
  const { orm, test, a } = await setup(t);
  const boom = new Error('boom');
  const run = TenantContext.run(a, () =>
    orm.transaction(async (tx) => {
      await tx.insert(orders).values({ tenantId: a, item: 'rolled back' });
      throw boom;
    }),
  );
  t.is(await t.throwsAsync(run), boom);
  await TenantContext.run(a, () =>
    orm.transaction(async (tx) => {
      await tx.insert(orders).values({ tenantId: a, item: 'kept' });
      await tx.transaction(async (inner) => {
        await inner.delete(orders);
        throw boom;
      }).catch(() => undefined);
    }),
  );
  const rows = await test.adminPool.query('SELECT item FROM orders WHERE tenant_id = $1', [a]);
  t.deepEqual(items(rows.rows), ['a1', 'a2', 'kept']);
});

test('withTenantDrizzle names the tenant; a read-only transaction refuses writes', async (t) => {
  const { db, a } = await setup(t);
  const rows = await withTenantDrizzle(db, a.toUpperCase(), (tx) => tx.select({ item: orders.item }).from(orders));
  t.deepEqual(items(rows), ['a1', 'a2']);
  const orm = tenantDrizzle(db, { tenantId: a });
  const error = await t.throwsAsync(orm.transaction((tx) => tx.insert(orders).values({ tenantId: a, item: 'x' }).execute(), { accessMode: 'read only' }));
  t.is((cause(error) as { code?: string }).code, '25006');
});

test('drizzle(tx) inside withTenantTransaction runs in that transaction; its own COMMIT is refused', async (t) => {
  const { db, test, a } = await setup(t);
  const rows = await db.withTenantTransaction(a, async (tx) => {
    const orm = drizzle(tx as never);
    await orm.insert(orders).values({ tenantId: a, item: 'a4' });
    return orm.select({ item: orders.item }).from(orders);
  });
  t.deepEqual(items(rows), ['a1', 'a2', 'a4']);
  const ended = db.withTenantTransaction(a, async (tx) => {
    const orm = drizzle(tx as never);
    await orm.execute(sql`commit`);
    await orm.insert(orders).values({ tenantId: a, item: 'after commit' });
  });
  t.true(cause(await t.throwsAsync(ended)) instanceof TransactionEndedError);
  t.is((await test.adminPool.query(`SELECT count(*)::int AS n FROM orders WHERE item = 'after commit'`)).rows[0].n, 0);
});
