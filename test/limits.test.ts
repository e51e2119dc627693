/**
 * Per-tenant limits in the same round trip (issue 15 item 5): by plan, statement_timeout,
 * lock_timeout, idle_in_transaction_session_timeout and work_mem set transaction-locally in the
 * prelude that carries the tenant; a slow query of a tenant on a small plan is cancelled at its
 * limit (503 with Retry-After through Koa) while another tenant's runs.
 */
import test from 'ava';
import Koa from 'koa';
import request from 'supertest';
import { createMultitenant, createTenantDb, PgTenantService, TenantAdminService, TenantLimitError, type TenantDb } from '../src/index.js';
import { createTenantRouter, multitenant, problemDetails } from '../src/koa/index.js';
import { createTestDatabase, ORDERS_SCHEMA } from './helpers/db.js';
import { observePool } from './helpers/observe.js';

const PLAN_LIMITS = {
  plans: { free: { statementTimeoutMs: 300, lockTimeoutMs: 200, workMem: '1MB' }, pro: { statementTimeoutMs: 20_000 } },
  default: { statementTimeoutMs: 5_000 },
};

test('the limits ride in the tenant prelude: same round trips, each setting in force inside the statement', async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  t.teardown(() => db.drop());
  const { pool, counts } = await observePool(db.appPool);
  const handle = createTenantDb(pool, { tenancy: db.config, limits: { lockTimeoutMs: 1500, idleInTransactionTimeoutMs: 60_000, workMem: '2MB' }, statementTimeoutMs: 4000 });
  const settings = `SELECT current_setting('statement_timeout') AS st, current_setting('lock_timeout') AS lt,
                            current_setting('idle_in_transaction_session_timeout') AS it, current_setting('work_mem') AS wm`;
  const one = await handle.tenantQuery(crypto.randomUUID(), settings);
  t.deepEqual(one.rows[0], { st: '4s', lt: '1500ms', it: '1min', wm: '2MB' });
  t.is(counts.roundTrips, 1, 'tenantQuery with four limits: still one round trip');
  const inTx = await handle.withTenantTransaction(crypto.randomUUID(), async (tx) => (await tx.query(settings)).rows[0]);
  t.deepEqual(inTx, { st: '4s', lt: '1500ms', it: '1min', wm: '2MB' });
  t.is(counts.roundTrips, 1 + 2, 'a one-statement transaction: the statement (with BEGIN and the prelude) and COMMIT');
  const after = await db.appPool.query(`SELECT current_setting('work_mem') AS wm, current_setting('statement_timeout') AS st`);
  t.notDeepEqual(after.rows[0], { wm: '2MB', st: '4s' }, 'transaction-local: nothing stays on the connection');
  t.throws(() => createTenantDb(db.appPool, { limits: { workMem: 'lots' } }), { message: /workMem/ });
  t.throws(() => createTenantDb(db.appPool, { planLimits: { plans: { free: { statementTimeoutMs: -1 } } } }), { message: /planLimits\.plans\.free\.statementTimeoutMs/ });
  t.throws(() => createTenantDb(db.appPool, { limits: { cpu: 1 } as never }), { message: /not a limit/ });
});

test("a slow query on the free plan is cancelled at its limit (503 + Retry-After) while a pro tenant's same query runs", async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  t.teardown(() => db.drop());
  const admin = new TenantAdminService(db.adminPool, { tenancy: db.config });
  const free = await admin.createTenant({ slug: 'small', name: 'Small', plan: 'free' });
  const pro = await admin.createTenant({ slug: 'big', name: 'Big', plan: 'pro' });
  const handle: TenantDb = createTenantDb(db.appPool, { tenancy: db.config, planLimits: PLAN_LIMITS });
  const core = createMultitenant({ tenantService: new PgTenantService(db.appPool, { tenancy: db.config }), tenancy: db.config });
  const app = new Koa();
  app.use(problemDetails());
  app.use(multitenant({ core }));
  const router = createTenantRouter();
  router.get('/report', async (ctx) => {
    ctx.body = (await handle.tenantQuery(undefined, `SELECT (SELECT 1 FROM pg_sleep(0.8)) AS slept, current_setting('statement_timeout') AS st`)).rows[0];
  });
  app.use(router.routes());
  const server = app.callback();

  const [small, big] = await Promise.all([
    request(server).get('/report').set('X-Tenant-ID', free.id),
    request(server).get('/report').set('X-Tenant-ID', pro.id),
  ]);
  t.is(small.status, 503);
  t.is(small.body.code, 'LBMT_STATEMENT_TIMEOUT');
  t.is(small.headers['retry-after'], '1');
  t.is(big.status, 200);
  t.deepEqual(big.body, { slept: 1, st: '20s' });

  // Outside a request: the plan is named by the call, or the default applies.
  await t.throwsAsync(handle.tenantQuery(pro.id, 'SELECT pg_sleep(0.8)', [], { plan: 'free' }), { instanceOf: TenantLimitError, code: 'LBMT_STATEMENT_TIMEOUT' });
  t.is((await handle.tenantQuery(free.id, `SELECT current_setting('statement_timeout') AS st`)).rows[0].st, '5s', 'no plan known: the default');

  // A lock held by one tenant's transaction: the free tenant's wait ends at its lock timeout.
  const blocker = await db.pool(db.superUrl, { max: 1 }).connect();
  t.teardown(() => blocker.release());
  await blocker.query('BEGIN');
  await blocker.query('LOCK TABLE orders IN ACCESS EXCLUSIVE MODE');
  await t.throwsAsync(handle.tenantQuery(free.id, 'SELECT count(*) FROM orders', [], { plan: 'free' }), { instanceOf: TenantLimitError, code: 'LBMT_LOCK_TIMEOUT' });
  await blocker.query('ROLLBACK');
});
