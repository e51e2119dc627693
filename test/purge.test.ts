/**
 * Purge with proof: a deleted tenant's rows leave every table with a tenant column — configured or
 * only found in the catalog — children first, each table counted afterwards; other tenants keep
 * theirs; a purge that cannot finish says where and can be run again; every instance hears of it.
 */
import test from 'ava';
import pg from 'pg';
import { PurgeIncompleteError, purgeTenant, TenantAdminService, TenantInputError, withTenantTransaction } from '../src/index.js';
import { createTestDatabase } from './helpers/db.js';
import { waitFor } from './helpers/wait.js';

const SCHEMA = `
  CREATE TABLE orders (tenant_id uuid NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY, item text NOT NULL, PRIMARY KEY (tenant_id, id));
  CREATE TABLE order_lines (tenant_id uuid NOT NULL, order_id bigint NOT NULL, sku text NOT NULL,
    FOREIGN KEY (tenant_id, order_id) REFERENCES orders (tenant_id, id));
  -- A tenant table nobody added to the config: no RLS, still the tenant's data.
  CREATE TABLE forgotten_notes (tenant_id uuid NOT NULL, body text NOT NULL);
  -- Same column name, another type: not a tenant column of this tenancy.
  CREATE TABLE imports (tenant_id text NOT NULL, body text NOT NULL);
`;

async function setup() {
  const db = await createTestDatabase({ schema: SCHEMA, tenancy: { tables: ['orders', 'order_lines'] } });
  await db.superQuery(`GRANT SELECT, DELETE ON forgotten_notes TO ${db.config.roles.admin}`);
  const admin = new TenantAdminService(db.adminPool, { tenancy: db.config });
  const tenants = [await admin.createTenant({ slug: 'gone', name: 'Gone' }), await admin.createTenant({ slug: 'kept', name: 'Kept' })];
  for (const [n, tenant] of tenants.entries()) {
    for (let i = 0; i < 3 + n; i += 1) {
      const { rows } = await db.superQuery(`INSERT INTO orders (tenant_id, item) VALUES ($1, $2) RETURNING id`, [tenant.id, `item ${i}`]);
      await db.superQuery(`INSERT INTO order_lines (tenant_id, order_id, sku) VALUES ($1, $2, 'S'), ($1, $2, 'T')`, [tenant.id, rows[0].id]);
      await db.superQuery(`INSERT INTO forgotten_notes (tenant_id, body) VALUES ($1, 'note')`, [tenant.id]);
    }
  }
  await db.superQuery(`INSERT INTO imports (tenant_id, body) VALUES ($1, 'kept: not this tenancy''s column type')`, [tenants[0]!.id]);
  return { db, admin, gone: tenants[0]!, kept: tenants[1]! };
}

const counts = async (db: Awaited<ReturnType<typeof setup>>['db'], id: string) => {
  const one = async (table: string) => Number((await db.superQuery(`SELECT count(*) AS n FROM ${table} WHERE tenant_id = $1`, [id])).rows[0].n);
  return { orders: await one('orders'), order_lines: await one('order_lines'), forgotten_notes: await one('forgotten_notes'), imports: await one('imports') };
};

test('purge removes a deleted tenant from every tenant table, the forgotten one too, children first, and proves zero rows remain', async (t) => {
  const { db, admin, gone, kept } = await setup();
  t.teardown(() => db.drop());
  const keptBefore = await counts(db, kept.id);

  await t.throwsAsync(purgeTenant(db.adminPool, gone.id, { tenancy: db.config }), { instanceOf: TenantInputError, message: /delete it first/ });
  t.deepEqual(await counts(db, gone.id), { orders: 3, order_lines: 6, forgotten_notes: 3, imports: 1 }, 'an active tenant is not touched');

  await admin.deleteTenant(gone.id);
  const listener = new pg.Client({ connectionString: db.superUrl });
  await listener.connect();
  t.teardown(() => listener.end());
  const heard: string[] = [];
  listener.on('notification', (n) => heard.push(n.payload ?? ''));
  await listener.query('LISTEN linkbay_tenants');

  const report = await purgeTenant(db.adminPool, gone.id, { tenancy: db.config });
  t.true(report.complete);
  t.deepEqual(
    report.tables.map((r) => [r.table, r.configured, r.deleted, r.remaining]),
    [
      ['public.forgotten_notes', false, 3, 0],
      ['public.order_lines', true, 6, 0],
      ['public.orders', true, 3, 0],
    ],
  );
  t.deepEqual(await counts(db, gone.id), { orders: 0, order_lines: 0, forgotten_notes: 0, imports: 1 });
  t.deepEqual(await counts(db, kept.id), keptBefore, 'the other tenant keeps every row');
  t.is((await admin.getTenant(gone.id)).status, 'deleted', 'the registry row stays: the id is never reused');
  await waitFor(() => heard.some((p) => p.includes(gone.id)), { timeoutMs: 10_000, message: 'the registry change was notified to the other instances' });

  const again = await purgeTenant(db.adminPool, gone.id, { tenancy: db.config });
  t.true(again.complete && again.tables.every((r) => r.deleted === 0), 'a second purge finds nothing and says so');
});

test('a purge that cannot delete somewhere says where, rolls back whole (nothing deleted), and finishes when run again', async (t) => {
  const { db, admin, gone } = await setup();
  t.teardown(() => db.drop());
  await db.superQuery(`REVOKE DELETE ON forgotten_notes FROM ${db.config.roles.admin}`);
  await admin.deleteTenant(gone.id);
  const before = await counts(db, gone.id);
  const error = await t.throwsAsync(purgeTenant(db.adminPool, gone.id, { tenancy: db.config }), { instanceOf: PurgeIncompleteError });
  t.regex(error!.message, /rolled back \(nothing was deleted\): public\.forgotten_notes could not be purged/);
  const failed = error!.report.tables.find((r) => r.table === 'public.forgotten_notes')!;
  t.is(failed.remaining, 3);
  t.regex(failed.error ?? '', /^42501 /, 'the privilege error is named');
  t.deepEqual(error!.report.tables.map((r) => [r.table, r.deleted, r.remaining, r.error === undefined]), [
    ['public.forgotten_notes', 0, 3, false],
    ['public.order_lines', 0, 6, true],
    ['public.orders', 0, 3, true],
  ], 'the other tables were tried (no error there) and rolled back with the rest');
  t.deepEqual(await counts(db, gone.id), before, 'nothing was deleted: no reader sees the tenant half-purged');

  await db.superQuery(`GRANT DELETE ON forgotten_notes TO ${db.config.roles.admin}`);
  const report = await purgeTenant(db.adminPool, gone.id, { tenancy: db.config });
  t.true(report.complete);
  t.deepEqual(await counts(db, gone.id), { orders: 0, order_lines: 0, forgotten_notes: 0, imports: 1 });
});

test('while a purge waits on its last table, a reader sees the tenant whole; once it commits, gone from every table at once', async (t) => {
  const { db, admin, gone } = await setup();
  t.teardown(() => db.drop());
  await admin.deleteTenant(gone.id);
  const before = await counts(db, gone.id);
  // One statement, one snapshot: what an instance that has not heard of the delete would read.
  const snapshot = async () =>
    (await db.superQuery(
      `SELECT (SELECT count(*) FROM orders WHERE tenant_id = $1)::int AS orders, (SELECT count(*) FROM order_lines WHERE tenant_id = $1)::int AS order_lines,
              (SELECT count(*) FROM forgotten_notes WHERE tenant_id = $1)::int AS forgotten_notes`,
      [gone.id],
    )).rows[0];
  const blocker = new pg.Client({ connectionString: db.superUrl });
  await blocker.connect();
  t.teardown(() => blocker.end());
  // orders is purged last (children first): its DELETE waits here, after the other two tables.
  await blocker.query('BEGIN; LOCK TABLE orders IN SHARE MODE');
  const purging = purgeTenant(db.adminPool, gone.id, { tenancy: db.config });
  await waitFor(
    async () => (await db.superQuery(`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'DELETE FROM %orders%'`)).rows.length > 0,
    { message: 'the purge reached orders and waits for the lock' },
  );
  t.deepEqual(await snapshot(), { orders: before.orders, order_lines: before.order_lines, forgotten_notes: before.forgotten_notes }, 'the first two tables are deleted but not committed');
  await blocker.query('COMMIT');
  t.true((await purging).complete);
  t.deepEqual(await snapshot(), { orders: 0, order_lines: 0, forgotten_notes: 0 });
});

test('a tenant transaction still running when the purge starts (an instance that had not heard of the delete) is waited for, and its rows purged too', async (t) => {
  const { db, admin, gone } = await setup();
  t.teardown(() => db.drop());
  await admin.deleteTenant(gone.id);
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  let inserted!: () => void;
  const sent = new Promise<void>((resolve) => (inserted = resolve));
  const stale = withTenantTransaction(db.appPool, gone.id, async (tx) => {
    await tx.query(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'late')`, [gone.id]);
    inserted();
    await held;
  }, { tenancy: db.config });
  await sent;
  const purging = purgeTenant(db.adminPool, gone.id, { tenancy: db.config });
  await waitFor(
    async () => (await db.superQuery(`SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND mode = 'ExclusiveLock'`)).rows.length > 0,
    { message: 'the purge waits for the running tenant transaction' },
  );
  release();
  await stale;
  const report = await purging;
  t.true(report.complete);
  t.deepEqual(await counts(db, gone.id), { orders: 0, order_lines: 0, forgotten_notes: 0, imports: 1 }, 'the late order too');
});

test('POST /admin/tenants/:id/purge: 401 without the token, 422 for a tenant not deleted, the report once deleted', async (t) => {
  const { db, admin, gone, kept } = await setup();
  t.teardown(() => db.drop());
  const Koa = (await import('koa')).default;
  const request = (await import('supertest')).default;
  const { createAdminRouter, requireBearerToken } = await import('../src/koa/index.js');
  const app = new Koa();
  app.use(createAdminRouter(admin, { authorize: requireBearerToken({ token: 'secret-token-of-test' }) }).routes());
  const server = app.callback();
  for (const path of [`/admin/tenants/${gone.id}/purge`, `/ADMIN/tenants/${gone.id}/purge`, `/admin//tenants/${gone.id}/purge`]) {
    const refused = await request(server).post(path);
    t.true(refused.status === 401 || refused.status === 404, `${path}: ${refused.status}`);
  }
  const auth = { Authorization: 'Bearer secret-token-of-test' };
  t.is((await request(server).post(`/admin/tenants/${kept.id}/purge`).set(auth)).status, 422);
  t.deepEqual(await counts(db, gone.id), { orders: 3, order_lines: 6, forgotten_notes: 3, imports: 1 }, 'nothing purged by the refused calls');
  await admin.deleteTenant(gone.id);
  const done = await request(server).post(`/admin/tenants/${gone.id}/purge`).set(auth);
  t.is(done.status, 200);
  t.true(done.body.complete);
  t.is(done.body.tables.length, 3);
});
