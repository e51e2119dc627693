/**
 * linkbay-multitenant/jobs on a real BullMQ (Redis on 127.0.0.1:6379, a key prefix per test), with
 * the job's data work done as the app role under RLS.
 */
import { randomBytes } from 'node:crypto';
import test from 'ava';
import { Queue, Worker, type Job } from 'bullmq';
import { createTenantDb, TenantContext, TenantRequiredError } from '../src/index.js';
import { addSystemJob, addTenantJob, systemJobProcessor, tenantJobProcessor } from '../src/jobs/index.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA } from './helpers/db.js';
import { until } from './helpers/until.js';

const connection = { host: '127.0.0.1', port: 6379, maxRetriesPerRequest: null };

function queueFor(t: { teardown(fn: () => Promise<void>): void }, name: string) {
  const prefix = `lbmt-test-${randomBytes(5).toString('hex')}`;
  const queue = new Queue(name, { connection, prefix });
  const workers: Worker[] = [];
  t.teardown(async () => {
    await Promise.all(workers.map((w) => w.close(true)));
    await queue.obliterate({ force: true });
    await queue.close();
  });
  const work = (processor: (job: Job) => Promise<unknown>) => workers.push(new Worker(name, processor, { connection, prefix }));
  return { queue, work };
}

async function settled(queue: Queue, id: string) {
  // The state first, then the job: a job read before it finished would lack its result.
  const state = await until(async () => {
    const now = await queue.getJobState(id);
    return now === 'completed' || now === 'failed' ? now : undefined;
  }, 20_000, `job ${id} to finish`);
  return { job: (await queue.getJob(id))!, state };
}

test('a job added in a tenant context runs as that tenant and sees only its rows', async (t) => {
  const test = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  t.teardown(() => test.drop());
  const db = createTenantDb(test.appPool, { tenancy: test.config });
  const [a, b] = [newTenantId(), newTenantId()];
  await test.superQuery(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'b-existing')`, [b]);
  const { queue, work } = queueFor(t, 'orders');
  work(tenantJobProcessor<{ item: string }>({ tenancy: test.config }, async (job) => {
    await db.tenantQuery(undefined, 'INSERT INTO orders (tenant_id, item) VALUES ($1, $2)', [job.tenantId, job.data.item]);
    const { rows } = await db.tenantQuery(undefined, 'SELECT item FROM orders'); // no WHERE
    return { tenant: TenantContext.getTenantId(), items: rows.map((r) => r.item) };
  }));
  const id = await TenantContext.run(a, () => addTenantJob(queue, 'create-order', { item: 'from-request' }), test.config);
  const { job, state } = await settled(queue, id!);
  t.is(state, 'completed');
  t.deepEqual(job.returnvalue, { tenant: a, items: ['from-request'] });
  await t.throwsAsync(addTenantJob(queue, 'create-order', { item: 'lost' }), { instanceOf: TenantRequiredError });
});

test('a job without a tenant fails without running its handler, and is not retried', async (t) => {
  const { queue, work } = queueFor(t, 'orders');
  const ran: string[] = [];
  work(tenantJobProcessor({}, async (job) => ran.push(job.id)));
  const bare = await queue.add('create-order', { item: 'no tenant' }, { attempts: 3 });
  const forged = await queue.add('create-order', { lbmt: { tenantId: 'not-a-uuid' }, data: {} }, { attempts: 3 });
  for (const [job, code] of [[bare, 'LBMT_JOB_TENANT_MISSING'], [forged, 'LBMT_INVALID_TENANT_ID']] as const) {
    const done = await settled(queue, job.id!);
    t.is(done.state, 'failed');
    t.true(done.job.failedReason.startsWith(`${code}:`), done.job.failedReason);
    t.false(done.job.failedReason.includes('not-a-uuid'));
    t.is(done.job.attemptsMade, 1, 'refused once, not retried');
  }
  t.deepEqual(ran, []);
});

test('system jobs name a reason and run without a tenant; a tenant job on a system worker fails unrun', async (t) => {
  const { queue, work } = queueFor(t, 'reports');
  work(systemJobProcessor(async (job) => ({ tenant: TenantContext.getTenantId() ?? null, reason: job.reason })));
  await t.throwsAsync(addSystemJob(queue, 'daily', {}, { reason: '' }), { instanceOf: TypeError });
  const id = await TenantContext.run(newTenantId(), () => addSystemJob(queue, 'daily', {}, { reason: 'daily cross-tenant report' }));
  const done = await settled(queue, id!);
  t.deepEqual(done.job.returnvalue, { tenant: null, reason: 'daily cross-tenant report' });
  const misrouted = await TenantContext.run(newTenantId(), () => addTenantJob(queue, 'daily', {}));
  const refused = await settled(queue, misrouted!);
  t.is(refused.state, 'failed');
  t.true(refused.job.failedReason.startsWith('LBMT_JOB_SCOPE_MISMATCH:'));
});
