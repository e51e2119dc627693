import anyTest, { type TestFn } from 'ava';
import Koa from 'koa';
import pg from 'pg';
import request from 'supertest';
import {
  PgTenantService,
  TenantAdminService,
  TenantDBPool,
  TenantInputError,
  TenantIsolationError,
  TenantMigrationService,
  type TenantExport,
} from '../src/index.js';
import { createMigrationRouter } from '../src/koa/index.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA, type TestDatabase } from './helpers/db.js';
import { waitFor } from './helpers/wait.js';

const SCHEMA = `${ORDERS_SCHEMA}
  CREATE TABLE order_notes (
    tenant_id uuid NOT NULL,
    order_id bigint NOT NULL,
    note text NOT NULL,
    note_length integer GENERATED ALWAYS AS (length(note)) STORED,
    PRIMARY KEY (tenant_id, order_id, note),
    FOREIGN KEY (tenant_id, order_id) REFERENCES orders (tenant_id, id)
  );`;

interface Context {
  shared: TestDatabase;
  target: TestDatabase;
  admin: TenantAdminService;
  pools: TenantDBPool;
  service: TenantMigrationService;
}
// Serial: the tests move tenants between the same two databases.
const test = anyTest as TestFn<Context>;

test.before(async (t) => {
  const options = { schema: SCHEMA, tenancy: { tables: ['orders', 'order_notes'] } };
  const [shared, target] = await Promise.all([createTestDatabase(options), createTestDatabase(options)]);
  const admin = new TenantAdminService(shared.adminPool, { tenancy: shared.config });
  const pools = new TenantDBPool({ tenantService: new PgTenantService(shared.appPool, { tenancy: shared.config }), sharedPool: shared.appPool, tenancy: shared.config });
  const service = new TenantMigrationService({ pools, admin, tenancy: shared.config });
  t.context = { shared, target, admin, pools, service };
});

test.after.always(async (t) => {
  await t.context.pools?.closeAll();
  await Promise.all([t.context.shared?.drop(), t.context.target?.drop()]);
});

let n = 0;
/** A tenant in the shared database with `orders` orders, each with one note. */
async function tenantWithRows(t: { context: Context }, orders: number) {
  const { admin, shared } = t.context;
  const tenant = await admin.createTenant({ slug: `m-${++n}`, name: `M${n}` });
  for (let i = 0; i < orders; i += 1) {
    const { rows } = await shared.superQuery(`INSERT INTO orders (tenant_id, item) VALUES ($1, $2) RETURNING id`, [tenant.id, `item-${i}`]);
    await shared.superQuery(`INSERT INTO order_notes (tenant_id, order_id, note) VALUES ($1, $2, $3)`, [tenant.id, rows[0].id, `note ${i}`]);
  }
  return tenant;
}

const itemsIn = async (db: TestDatabase, tenant: string) =>
  (await db.superQuery(`SELECT item FROM orders WHERE tenant_id = $1 ORDER BY item`, [tenant])).rows.map((r) => r.item as string);

test.serial('export reads only the tenant, every table', async (t) => {
  const { service } = t.context;
  const a = await tenantWithRows(t, 3);
  await tenantWithRows(t, 2); // another tenant in the same tables
  const data = await service.exportTenantData(a.id);
  t.is(data.tenantId, a.id);
  t.deepEqual(data.tables.map((x) => [x.table, x.rows.length]), [['public.orders', 3], ['public.order_notes', 3]]);
  const tenantColumn = data.tables[0]!.columns.indexOf('tenant_id');
  t.true(data.tables.every((x) => x.rows.every((row) => row[x.columns.indexOf('tenant_id')] === a.id)));
  t.true(tenantColumn >= 0);
});

test.serial('export is one snapshot: rows committed between its reads of two tables are in neither', async (t) => {
  const { service, shared } = t.context;
  const a = await tenantWithRows(t, 3);
  // Hold order_notes, so that the export has read orders and waits before reading order_notes.
  const locker = new pg.Client({ connectionString: shared.superUrl });
  await locker.connect();
  t.teardown(() => locker.end());
  await locker.query('BEGIN');
  await locker.query('LOCK TABLE order_notes IN ACCESS EXCLUSIVE MODE');
  const exporting = service.exportTenantData(a.id);
  await waitFor(
    async () =>
      (await shared.superQuery(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%order_notes%' AND pid <> $1`, [(locker as unknown as { processID: number }).processID])).rowCount,
    { message: 'the export waits to read order_notes' },
  );
  // A new order with its note, committed while the export is between the two tables.
  const { rows } = await locker.query(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'late') RETURNING id`, [a.id]);
  await locker.query(`INSERT INTO order_notes (tenant_id, order_id, note) VALUES ($1, $2, 'late note')`, [a.id, rows[0].id]);
  await locker.query('COMMIT');
  const data = await exporting;
  t.deepEqual(data.tables.map((x) => [x.table, x.rows.length]), [['public.orders', 3], ['public.order_notes', 3]], 'counts of one moment');
  const [orders, notes] = data.tables as [TenantExport['tables'][number], TenantExport['tables'][number]];
  const orderIds = new Set(orders.rows.map((row) => row[orders.columns.indexOf('id')]));
  t.true(notes.rows.every((row) => orderIds.has(row[notes.columns.indexOf('order_id')])), 'every exported note has its order in the export');
  t.is((await shared.superQuery(`SELECT count(*)::int AS n FROM order_notes WHERE tenant_id = $1`, [a.id])).rows[0].n, 4, 'the late note was committed');
});

test.serial('import is one transaction: a failure in the last table leaves no row in any table', async (t) => {
  const { service, target } = t.context;
  const g = await tenantWithRows(t, 2);
  const data = await service.exportTenantData(g.id);
  const [orders, notes] = data.tables as [TenantExport['tables'][number], TenantExport['tables'][number]];
  const orderId = notes.columns.indexOf('order_id');
  // Notes of an order that is not in the export: the foreign key refuses them, after orders were written.
  const broken: TenantExport = { ...data, tables: [orders, { ...notes, rows: notes.rows.map((row) => row.map((v, i) => (i === orderId ? '999999999' : v))) }] };
  const error = await t.throwsAsync<pg.DatabaseError>(service.importTenantData(g.id, broken, target.pool(target.ownerUrl, { max: 1 })));
  t.is(error?.code, '23503', 'refused by the foreign key in order_notes');
  t.deepEqual(await itemsIn(target, g.id), [], 'no order was left behind');
  t.is((await target.superQuery(`SELECT count(*)::int AS n FROM order_notes WHERE tenant_id = $1`, [g.id])).rows[0].n, 0);
  // The same export without the fault imports whole.
  t.deepEqual((await service.importTenantData(g.id, data, target.pool(target.ownerUrl, { max: 1 }))).counts, { 'public.orders': 2, 'public.order_notes': 2 });
  await target.superQuery(`DELETE FROM order_notes WHERE tenant_id = $1`, [g.id]);
  await target.superQuery(`DELETE FROM orders WHERE tenant_id = $1`, [g.id]);
});

test.serial('move: rows land in the target in one transaction, the registry follows, the source is emptied, sequences move on', async (t) => {
  const { service, shared, target, pools, admin } = t.context;
  const a = await tenantWithRows(t, 4);
  const neighbour = await tenantWithRows(t, 2);
  const createdAt = (await shared.superQuery(`SELECT created_at::text AS at FROM orders WHERE tenant_id = $1 ORDER BY item`, [a.id])).rows.map((r) => r.at);
  const result = await service.moveTenant(a.id, { databaseUrl: target.appUrl, targetPool: target.pool(target.ownerUrl, { max: 1 }), deleteSource: true, settleMs: 50 });
  t.deepEqual(result.counts, { 'public.orders': 4, 'public.order_notes': 4 });
  t.true(result.sourceDeleted);
  t.deepEqual((await target.superQuery(`SELECT created_at::text AS at FROM orders WHERE tenant_id = $1 ORDER BY item`, [a.id])).rows.map((r) => r.at), createdAt, 'timestamps to the microsecond');
  t.deepEqual(await itemsIn(target, a.id), ['item-0', 'item-1', 'item-2', 'item-3']);
  t.deepEqual(await itemsIn(shared, a.id), [], 'deleted from the source');
  t.deepEqual(await itemsIn(shared, neighbour.id), ['item-0', 'item-1'], 'the neighbour is untouched');
  const moved = await admin.getTenant(a.id);
  t.like(moved, { status: 'active', databaseUrl: target.appUrl });
  // The app now reaches it in its new database, and new rows get ids past the imported ones.
  const { rows } = await pools.tenantQuery(a.id, `INSERT INTO orders (tenant_id, item) VALUES ($1, 'after move') RETURNING id`, [a.id]);
  const max = (await target.superQuery(`SELECT max(id)::int AS max FROM orders WHERE tenant_id = $1 AND item <> 'after move'`, [a.id])).rows[0].max;
  t.true(Number(rows[0].id) > max);
  t.deepEqual((await pools.tenantQuery(a.id, 'SELECT note, note_length FROM order_notes ORDER BY note')).rows.map((r) => r.note_length), [6, 6, 6, 6]);
});

test.serial('copy keeps the source; a target that already holds the tenant is refused and nothing changes', async (t) => {
  const { service, shared, target, admin } = t.context;
  const b = await tenantWithRows(t, 2);
  const targetPool = target.pool(target.ownerUrl, { max: 1 });
  await service.moveTenant(b.id, { databaseUrl: target.appUrl, targetPool, settleMs: 0 });
  t.deepEqual(await itemsIn(shared, b.id), ['item-0', 'item-1'], 'copied, not moved');
  // Back to the shared database: it still holds b's rows, so the import is refused.
  await t.throwsAsync(service.moveTenant(b.id, { databaseUrl: null, targetPool: shared.pool(shared.ownerUrl, { max: 1 }), settleMs: 0 }), {
    instanceOf: TenantInputError,
    message: /already holds rows/,
  });
  t.like(await admin.getTenant(b.id), { status: 'active', databaseUrl: target.appUrl }, 'status and registry as before');
  await t.throwsAsync(service.moveTenant(b.id, { databaseUrl: target.appUrl, targetPool, settleMs: 0 }), { instanceOf: TenantInputError, message: /already lives/ });
});

test.serial("an export holding another tenant's rows is refused by RLS on the target, and nothing is written", async (t) => {
  const { service, target } = t.context;
  const victim = newTenantId();
  const c = await tenantWithRows(t, 1);
  const data = await service.exportTenantData(c.id);
  const [orders, notes] = data.tables as [TenantExport['tables'][number], TenantExport['tables'][number]];
  t.is(notes.rows.length, 1);
  // Both tables, the last one forged: neither is written.
  const forged: TenantExport = {
    ...data,
    tables: [orders, { ...notes, rows: notes.rows.map((row) => row.map((v, i) => (notes.columns[i] === 'tenant_id' ? victim : v))) }],
  };
  await t.throwsAsync(service.importTenantData(c.id, forged, target.pool(target.ownerUrl, { max: 1 })), { instanceOf: TenantIsolationError });
  t.is((await target.superQuery(`SELECT count(*)::int AS n FROM order_notes WHERE tenant_id IN ($1, $2)`, [c.id, victim])).rows[0].n, 0);
  // A pool on which RLS does not apply (a superuser) could write anything: refused.
  await t.throwsAsync(service.importTenantData(c.id, data, target.pool(target.superUrl, { max: 1 })), { message: /row level security does not apply/ });
  t.deepEqual(await itemsIn(target, victim), []);
  t.deepEqual(await itemsIn(target, c.id), []);
  await t.throwsAsync(service.importTenantData(c.id, { ...data, tenantId: victim }, target.pool(target.ownerUrl)), { instanceOf: TenantInputError });
  await t.throwsAsync(service.importTenantData(c.id, { ...data, tables: [{ table: 'public.secrets', columns: [], rows: [] }] }, target.pool(target.ownerUrl)), {
    instanceOf: TenantInputError,
  });
});

test.serial('the migration router: export as a dry run, move to a named target only', async (t) => {
  const { service, target, shared } = t.context;
  const d = await tenantWithRows(t, 2);
  const app = new Koa();
  const router = createMigrationRouter(service, {
    authorize: async (ctx, next) => {
      if (ctx.get('authorization') !== 'Bearer ok') ctx.throw(401);
      await next();
    },
    targets: { 'eu-2': { databaseUrl: target.appUrl, targetPool: target.pool(target.ownerUrl, { max: 1 }), settleMs: 0 } },
  });
  app.use(router.routes());
  const http = () => request(app.callback());
  t.is((await http().get(`/admin/tenants/${d.id}/export`)).status, 401);
  const exported = await http().get(`/admin/tenants/${d.id}/export`).set('authorization', 'Bearer ok');
  t.is(exported.status, 200);
  t.deepEqual(exported.body.counts, { 'public.orders': 2, 'public.order_notes': 2 });
  t.is((await http().post(`/admin/tenants/${d.id}/move`).set('authorization', 'Bearer ok').send({ target: 'postgres://evil/db' })).status, 422);
  t.is((await http().post(`/admin/tenants/${d.id}/move`).set('authorization', 'Bearer ok').send({ target: 'eu-2', deleteSource: 'yes' })).status, 422);
  t.is((await http().get(`/admin/tenants/${newTenantId()}/export`).set('authorization', 'Bearer ok')).status, 404);
  const moved = await http().post(`/admin/tenants/${d.id}/move`).set('authorization', 'Bearer ok').send({ target: 'eu-2', deleteSource: true });
  t.is(moved.status, 200);
  t.deepEqual(moved.body.counts, { 'public.orders': 2, 'public.order_notes': 2 });
  t.deepEqual(await itemsIn(shared, d.id), []);
  t.deepEqual(await itemsIn(target, d.id), ['item-0', 'item-1']);
});

test.serial('a database URL that does not reach the imported rows is refused, the import undone, the tenant as before', async (t) => {
  const { service, target, admin, shared } = t.context;
  const elsewhere = await createTestDatabase({ schema: SCHEMA, tenancy: { tables: ['orders', 'order_notes'] } });
  t.teardown(() => elsewhere.drop());
  const e = await tenantWithRows(t, 2);
  await t.throwsAsync(service.moveTenant(e.id, { databaseUrl: elsewhere.appUrl, targetPool: target.pool(target.ownerUrl, { max: 1 }), deleteSource: true, settleMs: 0 }), {
    message: /does not reach the imported rows/,
  });
  t.deepEqual(await itemsIn(target, e.id), [], 'the import was undone');
  t.deepEqual(await itemsIn(shared, e.id), ['item-0', 'item-1'], 'the source is untouched');
  t.like(await admin.getTenant(e.id), { status: 'active', databaseUrl: null });
});

test.serial('a suspended tenant is moved and stays suspended', async (t) => {
  const { service, target, admin } = t.context;
  const f = await tenantWithRows(t, 1);
  await admin.suspendTenant(f.id);
  const result = await service.moveTenant(f.id, { databaseUrl: target.appUrl, targetPool: target.pool(target.ownerUrl, { max: 1 }), settleMs: 0 });
  t.deepEqual(result.counts, { 'public.orders': 1, 'public.order_notes': 1 });
  t.false(result.sourceDeleted);
  t.like(await admin.getTenant(f.id), { status: 'suspended', databaseUrl: target.appUrl });
});
