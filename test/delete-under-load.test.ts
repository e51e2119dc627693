/**
 * Delete while requests run (issue 13): tenant requests go through the Koa middleware and
 * withTenantTransaction on one instance, whose cache only LISTEN/NOTIFY invalidation can refresh,
 * while another instance's admin API deletes the tenant and then purges it. Every request either
 * completes as an ordinary request (both tables' full counts, read in one statement) or is refused
 * as a deleted tenant is (403 problem+json); none is served a half-purged tenant, and once the
 * instance refused the tenant it never serves it again.
 */
import test from 'ava';
import Koa from 'koa';
import request from 'supertest';
import { createMultitenant, PgTenantService, TenantAdminService, withTenantTransaction, type MultitenantCore } from '../src/index.js';
import { createAdminRouter, multitenant, problemDetails, requireBearerToken } from '../src/koa/index.js';
import { createTestDatabase } from './helpers/db.js';
import { waitFor } from './helpers/wait.js';

const SCHEMA = `
  CREATE TABLE customers (tenant_id uuid NOT NULL, id int NOT NULL, name text NOT NULL, PRIMARY KEY (tenant_id, id));
  CREATE TABLE orders (
    tenant_id uuid NOT NULL, id int NOT NULL, customer_id int NOT NULL, PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id));`;
const TOKEN = 'delete-under-load-token-0123456789';
const CUSTOMERS = 50;
const ORDERS = 400;

interface Outcome {
  startedAt: number;
  status: number;
  counts?: { customers: number; orders: number };
  code?: string;
}

test('requests running while a tenant is deleted and purged end or are refused; none sees it half-purged', async (t) => {
  const db = await createTestDatabase({ schema: SCHEMA, tenancy: { tables: ['customers', 'orders'] } });
  t.teardown(() => db.drop());
  const admin = new TenantAdminService(db.adminPool, { tenancy: db.config });
  const doomed = await admin.createTenant({ slug: 'doomed', name: 'Doomed' });
  const other = await admin.createTenant({ slug: 'other', name: 'Other' });
  for (const tenant of [doomed, other]) {
    await db.superQuery(`INSERT INTO customers SELECT $1, g, 'c' || g FROM generate_series(1, ${CUSTOMERS}) g`, [tenant.id]);
    await db.superQuery(`INSERT INTO orders SELECT $1, g, 1 + g % ${CUSTOMERS} FROM generate_series(1, ${ORDERS}) g`, [tenant.id]);
  }

  // The tenant instance: a one-hour cache, so only the invalidation can make it refuse the tenant.
  const pool = db.pool(db.appUrl, { max: 4 });
  const core: MultitenantCore = createMultitenant({ tenantService: new PgTenantService(pool, { tenancy: db.config }), tenancy: db.config, cache: { ttlMs: 3_600_000 } });
  t.teardown(() => core.close());
  await core.listen(db.appUrl, { reconnectDelayMs: 20, maxReconnectDelayMs: 100 });
  const app = new Koa();
  app.use(problemDetails());
  app.use(multitenant({ core }));
  app.use(async (ctx) => {
    // One statement, one snapshot: both tables' counts as one moment of the database saw them.
    ctx.body = await withTenantTransaction(
      pool,
      undefined,
      async (tx) => (await tx.query('SELECT (SELECT count(*) FROM customers)::int AS customers, (SELECT count(*) FROM orders)::int AS orders')).rows[0],
      { tenancy: db.config },
    );
  });
  const tenantServer = app.callback();
  // The admin instance: another app, another process's worth of state.
  const adminApp = new Koa();
  adminApp.use(createAdminRouter(admin, { authorize: requireBearerToken({ token: TOKEN }) }).routes());
  const adminServer = adminApp.callback();

  const call = async (id: string): Promise<Outcome> => {
    const startedAt = performance.now();
    const response = await request(tenantServer).get('/').set('X-Tenant-ID', id);
    return { startedAt, status: response.status, counts: response.status === 200 ? response.body : undefined, code: response.body?.code };
  };
  // Warm the cache: the doomed tenant is cached as active before anything happens.
  t.deepEqual((await call(doomed.id)).counts, { customers: CUSTOMERS, orders: ORDERS });

  let stopAt = Number.POSITIVE_INFINITY;
  const deadline = performance.now() + 60_000;
  const outcomes: Outcome[][] = [];
  const others: Outcome[] = [];
  const worker = async (lane: Outcome[], id: string) => {
    // Bounded by count and time; stops once the test has seen enough after the purge.
    for (let i = 0; i < 5_000 && performance.now() < Math.min(stopAt, deadline); i += 1) lane.push(await call(id));
  };
  const lanes = [0, 1, 2].map(() => {
    const lane: Outcome[] = [];
    outcomes.push(lane);
    return worker(lane, doomed.id);
  });
  const otherLane = worker(others, other.id);
  await waitFor(() => outcomes.every((lane) => lane.length >= 5), { message: 'every lane served requests before the delete' });

  const deleteStarted = performance.now();
  const deleted = await request(adminServer).delete(`/admin/tenants/${doomed.id}`).set('authorization', `Bearer ${TOKEN}`);
  t.is(deleted.status, 204);
  const deleteAnswered = performance.now();
  // The notification reaches the tenant instance: from then on it refuses the tenant.
  await waitFor(async () => (await call(doomed.id)).status === 403, { message: 'the delete reached the tenant instance through LISTEN/NOTIFY' });
  const refusedFrom = performance.now();
  const purgeStarted = performance.now();
  const purged = await request(adminServer).post(`/admin/tenants/${doomed.id}/purge`).set('authorization', `Bearer ${TOKEN}`);
  t.is(purged.status, 200);
  t.true(purged.body.complete);
  t.deepEqual(purged.body.tables.map((x: { table: string; deleted: number; remaining: number }) => [x.table, x.deleted, x.remaining]), [
    ['public.orders', ORDERS, 0],
    ['public.customers', CUSTOMERS, 0],
  ]);
  const purgeAnswered = performance.now();
  await waitFor(() => outcomes.every((lane) => lane.filter((o) => o.startedAt > purgeAnswered).length >= 5), { message: 'every lane made requests after the purge' });
  stopAt = performance.now();
  await Promise.all([...lanes, otherLane]);

  const all = outcomes.flat();
  for (const outcome of all) {
    if (outcome.status === 200) t.deepEqual(outcome.counts, { customers: CUSTOMERS, orders: ORDERS }, 'a served request saw the whole tenant');
    else {
      t.is(outcome.status, 403, 'refused as a deleted tenant is');
      t.is(outcome.code, 'LBMT_TENANT_SUSPENDED');
    }
  }
  for (const lane of outcomes) {
    const firstRefusal = lane.findIndex((o) => o.status !== 200);
    t.true(firstRefusal > 0, 'each lane was served, then refused');
    t.true(lane.slice(firstRefusal).every((o) => o.status === 403), 'once refused, never served again');
  }
  t.true(all.filter((o) => o.startedAt >= refusedFrom).every((o) => o.status === 403), 'no request started after the refusal was seen is served');
  t.true(all.filter((o) => o.startedAt >= purgeStarted).every((o) => o.status === 403), 'nothing is served while or after the purge runs');
  // The other tenant is untouched throughout.
  t.true(others.length > 0 && others.every((o) => o.status === 200 && o.counts?.orders === ORDERS && o.counts.customers === CUSTOMERS), 'the other tenant was served throughout');
  const servedAfterDelete = all.filter((o) => o.startedAt >= deleteAnswered && o.status === 200).length;
  t.log(
    `${all.length} requests; delete answered in ${(deleteAnswered - deleteStarted).toFixed(1)} ms, refused ${(refusedFrom - deleteAnswered).toFixed(1)} ms after its answer ` +
      `(${servedAfterDelete} requests started in between were still served, whole); purge ${(purgeAnswered - purgeStarted).toFixed(1)} ms`,
  );
});
