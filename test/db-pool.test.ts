import anyTest, { type TestFn } from 'ava';
import {
  InvalidTenantIdError,
  PgTenantService,
  runWithTenantContext,
  TenantDBPool,
  TenantIsolationError,
  TenantNotFoundError,
  TenantSuspendedError,
} from '../src/index.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA, type TestDatabase } from './helpers/db.js';
import { waitFor } from './helpers/wait.js';

interface Context {
  shared: TestDatabase;
  own: TestDatabase;
  other: TestDatabase;
  /** x and y live in `own`, w in `other`, s in the shared database, z is suspended. */
  ids: { x: string; y: string; w: string; s: string; z: string };
}
// Serial: the tests read and write the same tenants' rows.
const test = anyTest as TestFn<Context>;

test.before(async (t) => {
  const options = { schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } };
  const [shared, own, other] = await Promise.all([createTestDatabase(options), createTestDatabase(options), createTestDatabase(options)]);
  const ids = { x: newTenantId(), y: newTenantId(), w: newTenantId(), s: newTenantId(), z: newTenantId() };
  await shared.superQuery(
    `INSERT INTO linkbay.tenants (id, slug, name, database_url, status) VALUES
       ($1, 'x', 'X', $6, 'active'), ($2, 'y', 'Y', $6, 'active'), ($3, 'w', 'W', $7, 'active'),
       ($4, 's', 'S', NULL, 'active'), ($5, 'z', 'Z', $6, 'suspended')`,
    [ids.x, ids.y, ids.w, ids.s, ids.z, own.appUrl, other.appUrl],
  );
  await own.superQuery(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'x-own'), ($2, 'y-own')`, [ids.x, ids.y]);
  await other.superQuery(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'w-own')`, [ids.w]);
  // A stale copy of x's rows in the shared database: x must never be served from there.
  await shared.superQuery(`INSERT INTO orders (tenant_id, item) VALUES ($1, 's-shared'), ($2, 'x-stale')`, [ids.s, ids.x]);
  t.context = { shared, own, other, ids };
});

test.after.always(async (t) => {
  await Promise.all([t.context.shared?.drop(), t.context.own?.drop(), t.context.other?.drop()]);
});

const pools = (t: { context: Context }, maxPools?: number) => {
  const pool = new TenantDBPool({ tenantService: new PgTenantService(t.context.shared.appPool), sharedPool: t.context.shared.appPool, maxPools });
  return pool;
};
const items = async (p: TenantDBPool, tenant: string | undefined) =>
  p.withTenantTransaction(tenant, async (tx) => (await tx.query('SELECT item FROM orders ORDER BY item')).rows.map((r) => r.item as string));

test.serial('each tenant is served from its database, tenants on one database share its pool and are still isolated by RLS', async (t) => {
  const { ids, own } = t.context;
  const p = pools(t);
  t.teardown(() => p.closeAll());
  t.deepEqual(await items(p, ids.x), ['x-own']);
  t.deepEqual(await items(p, ids.y), ['y-own']);
  t.deepEqual(await items(p, ids.w), ['w-own']);
  t.deepEqual(await items(p, ids.s), ['s-shared']);
  t.deepEqual((await p.tenantQuery(ids.x.toUpperCase(), 'SELECT count(*)::int AS n FROM orders')).rows, [{ n: 1 }]);
  t.is(await p.poolFor(ids.x), await p.poolFor(ids.y), 'one pool per database');
  t.not(await p.poolFor(ids.x), await p.poolFor(ids.w));
  t.is(await p.poolFor(ids.s), t.context.shared.appPool);
  const stats = p.stats();
  t.is(stats.pools.length, 2);
  t.false(stats.pools.some((s) => s.database.includes('lbmt-test')), 'passwords are redacted');
  t.true(stats.pools.some((s) => s.database.includes(new URL(own.appUrl).pathname)));
  // Writes land in the tenant's database too, and RLS refuses another tenant's row there.
  await p.tenantQuery(ids.x, `INSERT INTO orders (tenant_id, item) VALUES ($1, 'x-new')`, [ids.x]);
  t.deepEqual((await own.superQuery(`SELECT item FROM orders WHERE tenant_id = $1 ORDER BY item`, [ids.x])).rows.map((r) => r.item), ['x-new', 'x-own']);
  await t.throwsAsync(p.tenantQuery(ids.x, `INSERT INTO orders (tenant_id, item) VALUES ($1, 'forged')`, [ids.y]), { instanceOf: TenantIsolationError });
  t.is((await own.superQuery(`SELECT count(*)::int AS n FROM orders WHERE item = 'forged'`)).rows[0].n, 0);
  await own.superQuery(`DELETE FROM orders WHERE item = 'x-new'`);
});

test.serial('unknown, suspended and malformed tenants are refused before any pool is opened', async (t) => {
  const { ids } = t.context;
  const p = pools(t);
  t.teardown(() => p.closeAll());
  await t.throwsAsync(items(p, newTenantId()), { instanceOf: TenantNotFoundError });
  await t.throwsAsync(items(p, ids.z), { instanceOf: TenantSuspendedError });
  await t.throwsAsync(items(p, 'tenant-1; DROP TABLE orders'), { instanceOf: InvalidTenantIdError });
  await t.throwsAsync(p.tenantQuery(ids.z, 'SELECT 1'), { instanceOf: TenantSuspendedError });
  t.is(p.stats().pools.length, 0);
});

test.serial('the tenant comes from TenantContext when none is passed', async (t) => {
  const { ids } = t.context;
  const p = pools(t);
  t.teardown(() => p.closeAll());
  t.deepEqual(await runWithTenantContext(ids.w, () => items(p, undefined)), ['w-own']);
});

test.serial('closeTenantPool lets a transaction in flight commit, then closes; the next call opens a new pool', async (t) => {
  const { ids, own } = t.context;
  const p = pools(t);
  t.teardown(() => p.closeAll());
  const before = await p.poolFor(ids.x);
  let entered!: () => void;
  const inside = new Promise<void>((resolve) => (entered = resolve));
  let finish!: () => void;
  const held = new Promise<void>((resolve) => (finish = resolve));
  const inFlight = p.withTenantTransaction(ids.x, async (tx) => {
    await tx.query(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'in-flight')`, [ids.x]);
    entered();
    await held; // until the test has asked for the pool to close
    await tx.query('SELECT 1');
    return 'committed';
  });
  await inside;
  let closed = false;
  const closing = p.closeTenantPool(ids.x).then(() => (closed = true));
  await own.superQuery('SELECT 1'); // a round trip elsewhere: time for a wrongly eager close to happen
  t.false(closed, 'not closed while the transaction is in flight');
  t.false((before as unknown as { ending: boolean }).ending);
  finish();
  t.is(await inFlight, 'committed');
  await closing;
  t.true((before as unknown as { ending: boolean }).ending);
  t.is((before as unknown as { totalCount: number }).totalCount, 0, 'its connections are closed');
  t.is((await own.superQuery(`SELECT count(*)::int AS n FROM orders WHERE item = 'in-flight'`)).rows[0].n, 1);
  t.deepEqual(await items(p, ids.x), ['in-flight', 'x-own']);
  t.not(await p.poolFor(ids.x), before);
  await own.superQuery(`DELETE FROM orders WHERE item = 'in-flight'`);
  await p.closeTenantPool(ids.s); // the shared database: nothing to close
  t.deepEqual(await items(p, ids.s), ['s-shared']);
});

test.serial('beyond maxPools the least recently used pool is closed: its connections end and it takes no more work', async (t) => {
  const { ids, own } = t.context;
  // Tagged connections, to find this TenantDBPool's sessions in pg_stat_activity.
  const tag = `lbmt-evict-${Math.random().toString(36).slice(2, 10)}`;
  const p = new TenantDBPool({ tenantService: new PgTenantService(t.context.shared.appPool), sharedPool: t.context.shared.appPool, maxPools: 1, pool: { application_name: tag } });
  t.teardown(() => p.closeAll());
  const sessionsOnOwn = async () =>
    (await own.superQuery(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1`, [tag])).rows[0].n as number;
  t.deepEqual(await items(p, ids.x), ['x-own']);
  const first = (await p.poolFor(ids.x)) as unknown as import('pg').Pool;
  t.is(first.totalCount, 1);
  t.is(await sessionsOnOwn(), 1, "x's database has one session of this TenantDBPool");
  t.deepEqual(await items(p, ids.w), ['w-own']); // another database: x's pool is pushed out
  t.is(p.stats().evictions, 1);
  await waitFor(async () => first.totalCount === 0 && (await sessionsOnOwn()) === 0, { message: "the pushed-out pool's connections are closed" });
  t.true(first.ending);
  await t.throwsAsync(first.query('SELECT 1'), { message: /after calling end/ }, 'the pushed-out pool is ended');
  t.not(await p.poolFor(ids.x), first, 'x gets a new pool');
});

test.serial('beyond maxPools, concurrent work on two databases still succeeds', async (t) => {
  const { ids } = t.context;
  const p = pools(t, 1);
  t.teardown(() => p.closeAll());
  const work = Array.from({ length: 40 }, (_, i) => (i % 2 ? items(p, ids.x) : items(p, ids.w)));
  const results = await Promise.all(work);
  results.forEach((rows, i) => t.deepEqual(rows, i % 2 ? ['x-own'] : ['w-own']));
  t.true(p.stats().pools.length <= 1);
});

test.serial('a tenant database that cannot be reached is a clear error for that tenant only', async (t) => {
  const { ids, shared } = t.context;
  const broken = newTenantId();
  await shared.superQuery(`INSERT INTO linkbay.tenants (id, slug, name, database_url) VALUES ($1, 'broken', 'B', 'postgres://nobody:secret@127.0.0.1:1/nowhere')`, [broken]);
  t.teardown(() => shared.superQuery(`DELETE FROM linkbay.tenants WHERE id = $1`, [broken]).then(() => undefined));
  const p = pools(t);
  t.teardown(() => p.closeAll());
  const error = await t.throwsAsync(items(p, broken));
  t.regex(String(error?.message), /ECONNREFUSED|connect/);
  t.deepEqual(await items(p, ids.x), ['x-own']);
});

test.serial('after closeAll nothing new is opened', async (t) => {
  const { ids } = t.context;
  const p = pools(t);
  await items(p, ids.x);
  await p.closeAll();
  await t.throwsAsync(items(p, ids.x), { message: /closed/ });
});

test.serial('a nested call joins the open transaction on its pool, even after that pool was pushed out', async (t) => {
  const { ids, own } = t.context;
  const p = pools(t, 1);
  t.teardown(() => p.closeAll());
  // Another tenant's work, registered outside x's transaction (so not nested in it), run on a signal.
  let push!: () => void;
  const elsewhere = new Promise<void>((resolve) => (push = resolve)).then(() => items(p, ids.w));
  await t.throwsAsync(
    p.withTenantTransaction(ids.x, async (tx) => {
      await tx.query(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'outer')`, [ids.x]);
      push();
      t.deepEqual(await elsewhere, ['w-own']); // another database: pushes x's pool out (maxPools 1)
      t.is(p.stats().pools.length, 1);
      await p.tenantQuery(ids.x, `INSERT INTO orders (tenant_id, item) VALUES ($1, 'nested')`, [ids.x]);
      throw new Error('roll back all of it');
    }),
    { message: 'roll back all of it' },
  );
  t.is((await own.superQuery(`SELECT count(*)::int AS n FROM orders WHERE item IN ('outer', 'nested')`)).rows[0].n, 0, 'the nested insert rolled back with the outer one');
});

test.serial('closeTenantPool after a move closes the database the tenant was served from', async (t) => {
  const { shared, own, other } = t.context;
  // A tenant of its own: other tests here run concurrently and must not see it move.
  const v = newTenantId();
  await shared.superQuery(`INSERT INTO linkbay.tenants (id, slug, name, database_url) VALUES ($1, 'v', 'V', $2)`, [v, own.appUrl]);
  t.teardown(() => shared.superQuery(`DELETE FROM linkbay.tenants WHERE id = $1`, [v]).then(() => undefined));
  await own.superQuery(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'v-before')`, [v]);
  t.teardown(() => own.superQuery(`DELETE FROM orders WHERE tenant_id = $1`, [v]).then(() => undefined));
  const p = pools(t);
  t.teardown(() => p.closeAll());
  t.deepEqual(await items(p, v), ['v-before']);
  const before = (await p.poolFor(v)) as unknown as { ending: boolean };
  // v moves to the other database (here the registry says so; moving the rows is the caller's part).
  await shared.superQuery(`UPDATE linkbay.tenants SET database_url = $2 WHERE id = $1`, [v, other.appUrl]);
  await p.closeTenantPool(v);
  t.true(before.ending, 'the old database pool is closed');
  t.deepEqual(await items(p, v), [], 'served from the new database, which holds no rows of v');
});

test.serial('a tenant database URL whose role bypasses RLS is refused, for that tenant only', async (t) => {
  const { ids, shared, own } = t.context;
  const bypass = newTenantId();
  await shared.superQuery(`INSERT INTO linkbay.tenants (id, slug, name, database_url) VALUES ($1, 'bypass', 'B', $2)`, [bypass, own.adminUrl]);
  t.teardown(() => shared.superQuery(`DELETE FROM linkbay.tenants WHERE id = $1`, [bypass]).then(() => undefined));
  const p = pools(t);
  t.teardown(() => p.closeAll());
  await t.throwsAsync(items(p, bypass), { message: /bypasses row level security/ });
  await t.throwsAsync(p.poolFor(bypass), { message: /bypasses row level security/ });
  t.deepEqual(await items(p, ids.x), ['x-own']);
});

test.serial('a tenant database URL whose login role is a superuser is refused, even when it sets role to the app role', async (t) => {
  const { ids, shared, own } = t.context;
  // current_user is the app role, session_user the superuser: `RESET ROLE` away from bypassing RLS.
  const disguised = new URL(own.superUrl);
  disguised.searchParams.set('options', `-c role=${own.config.roles.app}`);
  const tenant = newTenantId();
  await shared.superQuery(`INSERT INTO linkbay.tenants (id, slug, name, database_url) VALUES ($1, 'disguised', 'D', $2)`, [tenant, disguised.toString()]);
  t.teardown(() => shared.superQuery(`DELETE FROM linkbay.tenants WHERE id = $1`, [tenant]).then(() => undefined));
  const p = pools(t);
  t.teardown(() => p.closeAll());
  const error = await t.throwsAsync(items(p, tenant), { message: /bypasses row level security/ });
  const password = new URL(own.superUrl).password;
  if (password) t.false(String(error?.message).includes(`:${password}@`), 'the password is not in the message');
  t.regex(String(error?.message), /\*\*\*|postgres:\/\/[^:@]+@/);
  t.deepEqual(await items(p, ids.x), ['x-own']);
});
