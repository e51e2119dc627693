/**
 * linkbay-multitenant/jobs on a real pg-boss (its own schema on the test database, run by the
 * superuser as its operator would), with the job's data work done as the app role under RLS.
 */
import diagnostics from 'node:diagnostics_channel';
import test from 'ava';
import PgBoss from 'pg-boss';
import Koa from 'koa';
import request from 'supertest';
import { createMultitenant, createTenantDb, PgTenantService, TenantContext, TenantRequiredError, type TenantDb } from '../src/index.js';
import { multitenant, problemDetails } from '../src/koa/index.js';
import { JOB_CHANNELS, sendSystemJob, sendTenantJob, workSystemJobs, workTenantJobs, type JobRefusedEvent, type SystemJobEvent } from '../src/jobs/index.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA, type TestDatabase } from './helpers/db.js';
import { until } from './helpers/until.js';

const QUEUE = 'orders';
const WORK = { pollingIntervalSeconds: 0.5 };

async function setup(t: { teardown(fn: () => Promise<void>): void }) {
  const test = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  const boss = new PgBoss({ connectionString: test.superUrl, schema: 'pgboss', max: 2, supervise: false, schedule: false });
  boss.on('error', () => undefined); // surfaced through job states in these tests
  await boss.start();
  await boss.createQueue(QUEUE, { name: QUEUE, retryLimit: 0 });
  t.teardown(async () => {
    await boss.stop({ graceful: false, wait: true });
    await test.drop();
  });
  const db = createTenantDb(test.appPool, { tenancy: test.config });
  return { test, boss, db };
}

async function finished(boss: PgBoss, id: string) {
  return until(async () => {
    const job = await boss.getJobById(QUEUE, id);
    return job && (job.state === 'completed' || job.state === 'failed') ? job : undefined;
  }, 20_000, `job ${id} to finish`);
}

/** The worker under test: records the tenant it ran as and what the app role saw for it. */
async function ordersWorker(boss: PgBoss, db: TenantDb, test: TestDatabase, ran: string[]) {
  await workTenantJobs<{ item: string }>(boss, QUEUE, { tenancy: test.config, work: WORK }, async (job) => {
    ran.push(job.id);
    await db.tenantQuery(undefined, 'INSERT INTO orders (tenant_id, item) VALUES ($1, $2)', [TenantContext.requireTenantId(), job.data.item]);
    const { rows } = await db.tenantQuery(undefined, 'SELECT tenant_id, item FROM orders'); // no WHERE
    return { tenant: TenantContext.getTenantId(), seen: rows.map((r) => `${r.tenant_id}:${r.item}`) };
  });
}

test('a job sent in a tenant context runs as that tenant and its queries see only its rows', async (t) => {
  const { test, boss, db } = await setup(t);
  const [a, b] = [newTenantId(), newTenantId()];
  await test.superQuery(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'b-existing')`, [b]);
  const ran: string[] = [];
  await ordersWorker(boss, db, test, ran);
  // What a request handler does: the tenant comes from the request's context.
  const id = await TenantContext.run(a, () => sendTenantJob(boss, QUEUE, { item: 'from-request' }), test.config);
  const job = await finished(boss, id!);
  t.is(job.state, 'completed');
  t.deepEqual(job.output, { tenant: a, seen: [`${a}:from-request`] });
  t.deepEqual(ran, [id]);
});

test('a job sent by a request handled by multitenant() runs as the request’s tenant', async (t) => {
  const { test, boss, db } = await setup(t);
  const { rows } = await test.adminPool.query(`INSERT INTO linkbay.tenants (slug, name) VALUES ('acme', 'Acme') RETURNING id`);
  const acme = rows[0].id as string;
  await ordersWorker(boss, db, test, []);
  const core = createMultitenant({ tenantService: new PgTenantService(test.appPool, { tenancy: test.config }), tenancy: test.config });
  const app = new Koa();
  app.use(problemDetails());
  app.use(multitenant({ core }));
  app.use(async (ctx) => {
    ctx.body = { jobId: await sendTenantJob(boss, QUEUE, { item: 'ordered over HTTP' }) }; // no tenant passed
  });
  const response = await request(app.callback()).post('/').set('X-Tenant-ID', acme.toUpperCase()).expect(200);
  t.like(await finished(boss, response.body.jobId), { state: 'completed', output: { tenant: acme, seen: [`${acme}:ordered over HTTP`] } });
});

test('the tenant is stamped canonical; an explicit tenantId works outside any context', async (t) => {
  const { test, boss, db } = await setup(t);
  const a = newTenantId();
  await ordersWorker(boss, db, test, []);
  const id = await sendTenantJob(boss, QUEUE, { item: 'scripted' }, { tenantId: `{${a.toUpperCase()}}`, tenancy: test.config });
  const stored = await boss.getJobById(QUEUE, id!);
  t.deepEqual(stored?.data, { lbmt: { tenantId: a }, data: { item: 'scripted' } });
  t.like(await finished(boss, id!), { state: 'completed', output: { tenant: a } });
});

test('sendTenantJob outside a tenant context refuses to send', async (t) => {
  const { boss } = await setup(t);
  await t.throwsAsync(sendTenantJob(boss, QUEUE, { item: 'lost' }), { instanceOf: TenantRequiredError });
  t.is(await boss.getQueueSize(QUEUE), 0);
});

test('a job without a tenant, or with an invalid one, fails without running its handler', async (t) => {
  const { test, boss, db } = await setup(t);
  const refused: JobRefusedEvent[] = [];
  const listener = (event: unknown) => refused.push(event as JobRefusedEvent);
  diagnostics.subscribe(JOB_CHANNELS.refused, listener);
  t.teardown(() => diagnostics.unsubscribe(JOB_CHANNELS.refused, listener));
  const ran: string[] = [];
  await ordersWorker(boss, db, test, ran);
  const bare = await boss.send(QUEUE, { item: 'no tenant' });
  const forged = await boss.send(QUEUE, { lbmt: { tenantId: 'not-a-uuid' }, data: { item: 'forged' } });
  const system = await sendSystemJob(boss, QUEUE, { item: 'system' }, { reason: 'misrouted on purpose' });
  for (const [id, code] of [[bare, 'LBMT_JOB_TENANT_MISSING'], [forged, 'LBMT_INVALID_TENANT_ID'], [system, 'LBMT_JOB_SCOPE_MISMATCH']] as const) {
    const job = await finished(boss, id!);
    t.is(job.state, 'failed');
    t.is((job.output as { code?: string }).code, code);
  }
  t.deepEqual(ran, []);
  t.is((await test.adminPool.query('SELECT count(*)::int AS n FROM orders')).rows[0].n, 0);
  // Published once per job (other tests' workers publish on the same channel: filter by id).
  const ids = new Set([bare, forged, system]);
  t.deepEqual(refused.filter((e) => ids.has(e.jobId)).map((e) => [e.jobId, e.code]).sort(), [[bare, 'LBMT_JOB_TENANT_MISSING'], [forged, 'LBMT_INVALID_TENANT_ID'], [system, 'LBMT_JOB_SCOPE_MISMATCH']].sort());
  // The raw value is not echoed in the error the queue stores.
  t.false(JSON.stringify((await boss.getJobById(QUEUE, forged!))?.output).includes('not-a-uuid'));
});

test('a job whose tenant id is of another type than the worker\'s tenancy is refused', async (t) => {
  const { test, boss, db } = await setup(t);
  const ran: string[] = [];
  await ordersWorker(boss, db, test, ran); // uuid tenancy
  const id = await sendTenantJob(boss, QUEUE, { item: 'x' }, { tenantId: 42n, tenancy: { ...test.config, tenantIdType: 'bigint' } });
  const job = await finished(boss, id!);
  t.is(job.state, 'failed');
  t.is((job.output as { code?: string }).code, 'LBMT_INVALID_TENANT_ID');
  t.deepEqual(ran, []);
});

test('system jobs must name a reason, are observable, and run without a tenant', async (t) => {
  const { test, boss, db } = await setup(t);
  const events: SystemJobEvent[] = [];
  const listener = (event: unknown) => events.push(event as SystemJobEvent);
  diagnostics.subscribe(JOB_CHANNELS.system, listener);
  t.teardown(() => diagnostics.unsubscribe(JOB_CHANNELS.system, listener));
  await t.throwsAsync(sendSystemJob(boss, 'reports', {}, { reason: '  ' }), { instanceOf: TypeError });
  await t.throwsAsync(sendSystemJob(boss, 'reports', {}, undefined as never), { instanceOf: TypeError });
  await boss.createQueue('reports', { name: 'reports', retryLimit: 0 });
  await workSystemJobs<{ day: string }>(boss, 'reports', { work: WORK }, async (job) => {
    const tenantCall = await db.tenantQuery(undefined, 'SELECT 1').then(() => 'ran', (error: Error) => error.name);
    return { tenant: TenantContext.getTenantId() ?? null, reason: job.reason, tenantCall };
  });
  // Sent from inside a request: the system job still runs without that request's tenant.
  const id = await TenantContext.run(newTenantId(), () => sendSystemJob(boss, 'reports', { day: '2026-12-03' }, { reason: 'daily cross-tenant report' }), test.config);
  const job = await until(async () => {
    const found = await boss.getJobById('reports', id!);
    return found?.state === 'completed' || found?.state === 'failed' ? found : undefined;
  }, 20_000, 'the system job');
  t.deepEqual(job.output, { tenant: null, reason: 'daily cross-tenant report', tenantCall: 'TenantRequiredError' });
  const mine = events.filter((e) => e.jobId === id);
  t.deepEqual(mine.map((e) => e.phase), ['sent', 'started']);
  t.true(mine.every((e) => e.reason === 'daily cross-tenant report' && e.queue === 'reports'));
});
