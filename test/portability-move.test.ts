import anyTest, { type TestFn } from 'ava';
import diagnostics from 'node:diagnostics_channel';
import { Registry } from 'prom-client';
import Koa from 'koa';
import request from 'supertest';
import { CHANNELS, defineTenancy, PgTenantService, TenantAdminService, TenantDBPool, type Tenant } from '../src/index.js';
import { multitenant, problemDetails, refuseWritesWhileMoving } from '../src/koa/index.js';
import { createMetrics } from '../src/metrics/index.js';
import { TenantMoveJobs, TenantPortability, type MoveStep, type TenantMoveJobsOptions } from '../src/portability/index.js';
import { waitFor } from './helpers/wait.js';
import { portabilityFixture, seedTenant, serverDigest, type PortabilityFixture } from './helpers/portability.js';

const test = anyTest as TestFn<PortabilityFixture>;
test.before(async (t) => {
  t.context = await portabilityFixture();
});
test.after.always((t) => t.context.close?.());

/** Another app instance on the same databases: its own pools, services and job runner. */
function instance(f: PortabilityFixture, options: Partial<TenantMoveJobsOptions> = {}) {
  const admin = new TenantAdminService(f.source.adminPool, { tenancy: f.source.config });
  const pools = new TenantDBPool({ tenantService: new PgTenantService(f.source.appPool, { tenancy: f.source.config }), sharedPool: f.source.appPool, tenancy: f.source.config });
  const portability = new TenantPortability({ pools, admin, tenancy: f.source.config });
  const jobs = new TenantMoveJobs({
    portability,
    adminPool: f.source.pool(f.source.adminUrl, { max: 2 }),
    targets: { eu: { databaseUrl: f.target.appUrl, targetPool: f.target.pool(f.target.ownerUrl, { max: 2 }) } },
    settleMs: 0,
    ...options,
  });
  // The tenant API of this instance: reads and writes of accounts, writes refused while moving.
  const app = new Koa();
  app.use(problemDetails());
  app.use(multitenant({ tenantService: new PgTenantService(f.source.appPool, { tenancy: f.source.config }), tenancy: f.source.config, strategies: ['header'] }));
  app.use(refuseWritesWhileMoving({ db: f.source.appPool, retryAfterSeconds: 7 }));
  app.use(async (ctx) => {
    const id = (ctx.state.tenant as Tenant).id;
    if (ctx.method === 'POST') {
      const { rows } = await pools.withTenantTransaction(id, (tx) => tx.query(`INSERT INTO accounts (tenant_id, name) VALUES ($1, $2) RETURNING id::text`, [id, String(ctx.query.name)]));
      ctx.status = 201;
      ctx.body = rows[0];
    } else {
      const { rows } = await pools.withTenantTransaction(id, (tx) => tx.query('SELECT count(*)::int AS n FROM accounts'));
      ctx.body = rows[0];
    }
  });
  return { admin, pools, portability, jobs, http: () => request(app.callback()), close: () => pools.closeAll() };
}

/**
 * As a crashed instance: the sessions holding its locks die (their backends are terminated: the job
 * lock, and from `frozen` on the tenant's write key) and it stops. Tenant transactions hold the key
 * in share mode only, so exclusive advisory locks are the runner's.
 */
async function crash(f: PortabilityFixture): Promise<never> {
  const { rows } = await f.source.superQuery(
    `SELECT DISTINCT pid, pg_terminate_backend(pid) AS killed FROM pg_locks
      WHERE locktype = 'advisory' AND granted AND mode = 'ExclusiveLock' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
  );
  if (rows.length === 0 || !rows.every((row) => row.killed)) throw new Error(`expected the runner's locks to kill, found ${rows.length}`);
  throw new Error('crashed');
}

async function placement(f: PortabilityFixture, tenantId: string) {
  const { rows } = await f.source.superQuery(`SELECT database_url, status FROM linkbay.tenants WHERE id = $1`, [tenantId]);
  return rows[0] as { database_url: string | null; status: string };
}

test.serial('a move copies, verifies, switches and cleans; reads are served and writes refused (503 + Retry-After) while frozen', async (t) => {
  const f = t.context;
  const tenant = await seedTenant(f, 30);
  const original = await serverDigest(f.source, tenant.id);
  const seen: Array<[MoveStep, number, number, string | null]> = [];
  let a: ReturnType<typeof instance>;
  a = instance(f, {
    afterStep: async (_job, step) => {
      const write = await a.http().post('/?name=during').set('x-tenant-id', tenant.id);
      const read = await a.http().get('/').set('x-tenant-id', tenant.id);
      seen.push([step, write.status, read.status, write.headers['retry-after'] ?? null]);
    },
  });
  t.teardown(() => a.close());
  const job = await a.jobs.start(tenant.id, { target: 'eu' });
  t.like(job, { state: 'running', step: 'created', target: 'eu' });
  t.false('targetDatabaseUrl' in job, 'no URL in the job a route reports');
  const done = await a.jobs.run(job.id);
  t.like(done, { state: 'succeeded', step: 'cleaned', error: null });
  t.deepEqual(done.tables!.map((x) => [x.name, x.rows]), [['public.accounts', 30], ['public.memberships', 60]]);
  // Frozen from `frozen` until the switch has settled: writes 503 with Retry-After, reads 200.
  t.deepEqual(seen.map(([step, write, read, retry]) => [step, write, read, retry]), [
    ['frozen', 503, 200, '7'],
    ['copied', 503, 200, '7'],
    ['verified', 503, 200, '7'],
    ['switched', 503, 200, '7'],
    ['invalidated', 201, 200, null],
    ['cleaned', 201, 200, null],
  ]);
  t.is((await placement(f, tenant.id)).database_url, f.target.appUrl);
  const after = await serverDigest(f.target, tenant.id);
  t.is(after.account_rows, 32, 'the copy plus the two writes made after the switch, on the target');
  t.is((await serverDigest(f.source, tenant.id)).account_rows, 0, 'source deleted');
  t.is(original.membership_rows, after.membership_rows);
  t.is(original.memberships, after.memberships);
});

for (const step of ['frozen', 'copied', 'verified', 'switched', 'invalidated'] as const) {
  test.serial(`a move whose instance crashes after \`${step}\` is finished by another instance`, async (t) => {
    const f = t.context;
    const tenant = await seedTenant(f, 12);
    const original = await serverDigest(f.source, tenant.id);
    const a = instance(f, { afterStep: (_job, at) => (at === step ? crash(f) : undefined) });
    const b = instance(f);
    t.teardown(async () => {
      await a.close();
      await b.close();
    });
    const job = await a.jobs.start(tenant.id, { target: 'eu' });
    await t.throwsAsync(a.jobs.run(job.id));
    const left = await b.jobs.get(job.id);
    t.like(left, { state: 'running', step }, 'the crashed run left its last step recorded');
    // Either the old placement serves, or the new one is complete.
    const where = await placement(f, tenant.id);
    if (['frozen', 'copied', 'verified'].includes(step)) {
      t.is(where.database_url, null);
      t.deepEqual(await serverDigest(f.source, tenant.id), original);
    } else {
      t.is(where.database_url, f.target.appUrl);
      const target = await serverDigest(f.target, tenant.id);
      t.is(target.accounts, original.accounts);
      t.is(target.memberships, original.memberships);
    }
    t.like((await b.http().get('/').set('x-tenant-id', tenant.id)).body, { n: 12 }, 'reads are served meanwhile');
    const resumed = await b.jobs.resume();
    t.like(resumed.find((j) => j.id === job.id), { state: 'succeeded', step: 'cleaned' });
    t.like(await placement(f, tenant.id), { database_url: f.target.appUrl, status: 'active' });
    t.deepEqual(await serverDigest(f.target, tenant.id), original);
    t.is((await serverDigest(f.source, tenant.id)).account_rows, 0);
    t.is((await b.http().post('/?name=after').set('x-tenant-id', tenant.id)).status, 201);
    // Moved back home (to the shared database) for the next test's neighbours: not needed; tenants differ.
  });
}

test.serial('a runner that died between the switch and its record: the resume finds the registry on the target and never undoes it', async (t) => {
  const f = t.context;
  const tenant = await seedTenant(f, 6);
  const a = instance(f, { afterStep: (_job, at) => (at === 'verified' ? crash(f) : undefined) });
  const b = instance(f);
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  const job = await a.jobs.start(tenant.id, { target: 'eu' });
  await t.throwsAsync(a.jobs.run(job.id));
  // What the dead runner did next: the switch (the registry on the target) but not its record.
  await f.source.superQuery('UPDATE linkbay.tenants SET database_url = $2 WHERE id = $1', [tenant.id, f.target.appUrl]);
  t.like(await b.jobs.get(job.id), { state: 'running', step: 'verified' });
  // A write acknowledged on the new placement meanwhile (a caller outside Koa, through the registry).
  await b.pools.withTenantTransaction(tenant.id, (tx) => tx.query(`INSERT INTO accounts (tenant_id, name) VALUES ($1, 'after the switch')`, [tenant.id]));
  const resumed = (await b.jobs.resume()).find((j) => j.id === job.id);
  t.like(resumed, { state: 'succeeded', step: 'cleaned' });
  const { rows } = await f.target.superQuery(`SELECT count(*)::int AS n, count(*) FILTER (WHERE name = 'after the switch')::int AS late FROM accounts WHERE tenant_id = $1`, [tenant.id]);
  t.deepEqual(rows[0], { n: 7, late: 1 }, 'the target kept its rows and the write made after the switch');
});

test.serial('two instances never run one job at once; one move per tenant', async (t) => {
  const f = t.context;
  const tenant = await seedTenant(f, 5);
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let entered!: () => void;
  const inside = new Promise<void>((resolve) => (entered = resolve));
  const a = instance(f, { afterStep: async (_job, step) => { if (step === 'frozen') { entered(); await gate; } } });
  const b = instance(f);
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  const job = await a.jobs.start(tenant.id, { target: 'eu' });
  await t.throwsAsync(b.jobs.start(tenant.id, { target: 'eu' }), { code: 'LBMT_TENANT_EXISTS' });
  const running = a.jobs.run(job.id);
  await inside;
  // B finds the job held by a live instance: it returns it as it is and does nothing.
  t.like(await b.jobs.run(job.id), { state: 'running', step: 'frozen' });
  t.like((await b.jobs.resume()).find((j) => j.id === job.id), { state: 'running', step: 'frozen' });
  release();
  t.like(await running, { state: 'succeeded' });
});

test.serial('a move under concurrent write attempts loses no acknowledged write', async (t) => {
  const f = t.context;
  const tenant = await seedTenant(f, 40);
  const a = instance(f, { settleMs: 50 });
  t.teardown(() => a.close());
  const acknowledged: string[] = [];
  let refused = 0;
  let stop = false;
  const writer = async (w: number) => {
    for (let i = 0; !stop; i += 1) {
      const response = await a.http().post(`/?name=w${w}-${i}`).set('x-tenant-id', tenant.id);
      if (response.status === 201) acknowledged.push(response.body.id);
      else if (response.status === 503) refused += 1;
      else throw new Error(`unexpected ${response.status}`);
    }
  };
  const writers = [writer(1), writer(2), writer(3)];
  const job = await a.jobs.start(tenant.id, { target: 'eu' });
  const done = await a.jobs.run(job.id);
  // A few writes on the new placement too, then stop.
  const deadline = Date.now() + 10_000;
  const settled = acknowledged.length;
  while (acknowledged.length < settled + 3 && Date.now() < deadline) await new Promise((r) => setImmediate(r));
  stop = true;
  await Promise.all(writers);
  t.like(done, { state: 'succeeded' });
  const { rows } = await f.target.superQuery(`SELECT id::text FROM accounts WHERE tenant_id = $1`, [tenant.id]);
  const present = new Set(rows.map((r) => r.id as string));
  const lost = acknowledged.filter((id) => !present.has(id));
  t.deepEqual(lost, [], 'every acknowledged write is in the tenant\u2019s new database');
  t.is(present.size, 40 + acknowledged.length, 'and nothing else');
  t.log(`${acknowledged.length} writes acknowledged, ${refused} refused with 503 during the move`);
});

/** Whether a session waits for an exclusive advisory lock on the source: the runner taking the write key. */
async function keyWaiter(f: PortabilityFixture): Promise<boolean> {
  const { rows } = await f.source.superQuery(
    `SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND mode = 'ExclusiveLock' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
  );
  return rows.length > 0;
}

test.serial('a write already inside its transaction when writes freeze is waited for and copied; later writes are refused inside their transaction (no middleware), reads served', async (t) => {
  const f = t.context;
  const tenant = await seedTenant(f, 5);
  let released = false;
  let release!: () => void;
  const mayCommit = new Promise<void>((resolve) => (release = () => ((released = true), resolve())));
  let slow: Promise<string> | undefined;
  const during: Record<string, unknown> = {};
  let a: ReturnType<typeof instance>;
  a = instance(f, {
    afterStep: async (_job, step) => {
      if (step === 'frozen') {
        // A request that passed every check before the freeze, its INSERT sent, not committed yet.
        let inserted!: () => void;
        const sent = new Promise<void>((resolve) => (inserted = resolve));
        slow = a.pools.withTenantTransaction(tenant.id, async (tx) => {
          const { rows } = await tx.query(`INSERT INTO accounts (tenant_id, name) VALUES ($1, 'slow') RETURNING id::text`, [tenant.id]);
          inserted();
          await mayCommit;
          return rows[0].id as string;
        });
        await sent;
        // It commits once the runner waits for it (the write key). Without the key, only after the
        // copy was verified (the verified step below): then the copy would not have it.
        void waitFor(async () => released || (await keyWaiter(f)), { message: 'the runner waits for the running write', timeoutMs: 30_000 }).then(release, release);
      }
      if (step === 'verified') release();
      if (step === 'copied') {
        const insert = (tx: { query(text: string, values: unknown[]): Promise<unknown> }) => tx.query(`INSERT INTO accounts (tenant_id, name) VALUES ($1, 'refused')`, [tenant.id]);
        during.transaction = await a.pools.withTenantTransaction(tenant.id, insert).then(() => 'written', (error) => error.code);
        during.query = await a.pools.tenantQuery(tenant.id, `INSERT INTO accounts (tenant_id, name) VALUES ($1, 'refused')`, [tenant.id]).then(() => 'written', (error) => error.code);
        during.readThenWrite = await a.pools
          .withTenantTransaction(tenant.id, async (tx) => {
            const { rows } = await tx.query('SELECT count(*)::int AS n FROM accounts');
            during.readInside = rows[0].n;
            await insert(tx);
          })
          .then(() => 'written', (error) => error.code);
        during.read = (await a.pools.tenantQuery(tenant.id, 'SELECT count(*)::int AS n FROM accounts')).rows[0].n;
      }
    },
  });
  t.teardown(() => a.close());
  const done = await a.jobs.run((await a.jobs.start(tenant.id, { target: 'eu' })).id);
  const slowId = await slow!;
  t.like(done, { state: 'succeeded', step: 'cleaned', error: null }, 'no late write found on the source afterwards');
  t.deepEqual(during, { transaction: 'LBMT_TENANT_MOVING', query: 'LBMT_TENANT_MOVING', readThenWrite: 'LBMT_TENANT_MOVING', readInside: 6, read: 6 });
  const { rows } = await f.target.superQuery(`SELECT id::text, name FROM accounts WHERE tenant_id = $1 ORDER BY id`, [tenant.id]);
  t.true(rows.some((row) => row.id === slowId), 'the write acknowledged after the freeze is in the new database');
  t.is(rows.length, 6);
  t.false(rows.some((row) => row.name === 'refused'));
  t.is((await serverDigest(f.source, tenant.id)).account_rows, 0, 'source deleted: nothing landed there after the copy');
});

test.serial('a tenant transaction that does not end before freezeTimeoutMs fails the move before anything is copied; writes resume', async (t) => {
  const f = t.context;
  const tenant = await seedTenant(f, 3);
  const original = await serverDigest(f.source, tenant.id);
  const a = instance(f, { freezeTimeoutMs: 300 });
  t.teardown(() => a.close());
  let finish!: () => void;
  const held = new Promise<void>((resolve) => (finish = resolve));
  let opened!: () => void;
  const open = new Promise<void>((resolve) => (opened = resolve));
  const long = a.pools.withTenantTransaction(tenant.id, async (tx) => {
    await tx.query('SELECT count(*) FROM accounts');
    opened();
    await held;
  });
  await open;
  const done = await a.jobs.run((await a.jobs.start(tenant.id, { target: 'eu' })).id);
  finish();
  await long;
  t.like(done, { state: 'failed', error: { code: 'LBMT_MOVE_WRITES_RUNNING' } });
  t.deepEqual(await serverDigest(f.source, tenant.id), original);
  t.is((await serverDigest(f.target, tenant.id)).account_rows, 0);
  t.is((await a.http().post('/?name=after').set('x-tenant-id', tenant.id)).status, 201, 'writes allowed again');
});

test.serial('a read-only refusal that is not a move stays what it is', async (t) => {
  const f = t.context;
  const tenant = await seedTenant(f, 1);
  const a = instance(f);
  t.teardown(() => a.close());
  const error = await t.throwsAsync(
    a.pools.withTenantTransaction(tenant.id, async (tx) => {
      await tx.query('SET TRANSACTION READ ONLY');
      await tx.query(`INSERT INTO accounts (tenant_id, name) VALUES ($1, 'x')`, [tenant.id]);
    }),
  );
  t.is((error as { code?: string }).code, '25006');
  const asked = await t.throwsAsync(a.pools.tenantQuery(tenant.id, `INSERT INTO accounts (tenant_id, name) VALUES ($1, 'x')`, [tenant.id], { readOnly: true }));
  t.is((asked as { code?: string }).code, '25006');
});

test.serial('the import backend killed mid-move: the job fails, the target is emptied, the source serves and takes writes; a new move succeeds', async (t) => {
  const f = t.context;
  const tenant = await seedTenant(f, 10);
  const original = await serverDigest(f.source, tenant.id);
  const a = instance(f);
  t.teardown(() => a.close());
  // Hold the second table on the target: the import blocks there, inside its transaction, and is killed.
  const events: Array<{ operation: string; outcome: string; code?: string; tenantId: string | null }> = [];
  const listen = (event: unknown) => events.push(event as (typeof events)[number]);
  diagnostics.subscribe(CHANNELS.tenantOperation, listen);
  t.teardown(() => diagnostics.unsubscribe(CHANNELS.tenantOperation, listen));
  const blocker = await f.target.pool(f.target.superUrl, { max: 1 }).connect();
  await blocker.query('BEGIN; LOCK TABLE memberships IN EXCLUSIVE MODE');
  const job = await a.jobs.start(tenant.id, { target: 'eu' });
  const running = a.jobs.run(job.id);
  const deadline = Date.now() + 20_000;
  let killed = false;
  while (!killed && Date.now() < deadline) {
    const { rows } = await f.target.superQuery(
      `SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND usename = $1`,
      [f.target.config.roles.owner],
    );
    killed = rows.some((r) => r.killed);
  }
  await blocker.query('ROLLBACK');
  blocker.release();
  t.true(killed, 'the import backend was found waiting and killed');
  t.like(await running, { state: 'failed', step: 'frozen', error: { code: 'LBMT_MOVE_FAILED' } });
  t.deepEqual(await serverDigest(f.source, tenant.id), original, 'the source is as it was');
  t.is((await serverDigest(f.target, tenant.id)).account_rows, 0, 'nothing of the tenant on the target');
  t.is((await placement(f, tenant.id)).database_url, null);
  t.is((await a.http().post('/?name=still-here').set('x-tenant-id', tenant.id)).status, 201, 'writes allowed again');
  const again = await a.jobs.run((await a.jobs.start(tenant.id, { target: 'eu' })).id);
  t.like(again, { state: 'succeeded' });
  t.is((await serverDigest(f.target, tenant.id)).account_rows, 11);
  t.deepEqual(
    events.filter((e) => e.operation === 'move').map(({ outcome, code, tenantId }) => ({ outcome, code, tenantId })),
    [{ outcome: 'failed', code: 'LBMT_MOVE_FAILED', tenantId: tenant.id }, { outcome: 'succeeded', code: undefined, tenantId: tenant.id }],
    'each run of a job is one move operation, published as it ended',
  );
});

test.serial('a write that reaches the old placement after the copy (a stale instance) keeps the source rows, and the job says so', async (t) => {
  const f = t.context;
  const tenant = await seedTenant(f, 4);
  const a = instance(f, {
    afterStep: async (_job, step) => {
      if (step === 'invalidated') await f.source.superQuery(`UPDATE accounts SET name = 'late write' WHERE tenant_id = $1 AND id = (SELECT min(id) FROM accounts WHERE tenant_id = $1)`, [tenant.id]);
    },
  });
  t.teardown(() => a.close());
  const registry = new Registry();
  const metrics = createMetrics({ registry });
  t.teardown(() => metrics.close());
  const done = await a.jobs.run((await a.jobs.start(tenant.id, { target: 'eu' })).id);
  t.like(done, { state: 'succeeded', step: 'cleaned', error: { code: 'LBMT_MOVE_SOURCE_KEPT' } });
  const kept = await registry.getSingleMetric('lbmt_tenant_move_sources_kept_total')!.get();
  t.is(kept.values[0]?.value, 1, 'a source kept is counted, for an alert');
  const { rows } = await f.source.superQuery(`SELECT count(*)::int AS n, count(*) FILTER (WHERE name = 'late write')::int AS late FROM accounts WHERE tenant_id = $1`, [tenant.id]);
  t.deepEqual(rows[0], { n: 4, late: 1 }, 'nothing of the source deleted, the late write kept');
});

test.serial('a tenant with a database of its own moves back to the shared one', async (t) => {
  const f = t.context;
  const tenant = await seedTenant(f, 6);
  const original = await serverDigest(f.source, tenant.id);
  const a = instance(f, {});
  const home = instance(f, { targets: { home: { databaseUrl: null, targetPool: f.source.pool(f.source.ownerUrl, { max: 1 }) } } });
  t.teardown(async () => {
    await a.close();
    await home.close();
  });
  t.like(await a.jobs.run((await a.jobs.start(tenant.id, { target: 'eu' })).id), { state: 'succeeded' });
  t.is((await placement(f, tenant.id)).database_url, f.target.appUrl);
  const back = await home.jobs.run((await home.jobs.start(tenant.id, { target: 'home' })).id);
  t.like(back, { state: 'succeeded', step: 'cleaned', error: null });
  t.is((await placement(f, tenant.id)).database_url, null);
  t.deepEqual(await serverDigest(f.source, tenant.id), original);
  t.is((await serverDigest(f.target, tenant.id)).account_rows, 0, 'its own database emptied');
  t.like((await home.http().get('/').set('x-tenant-id', tenant.id)).body, { n: 6 });
});

test('moves refuse the Citus engine: its prelude carries no write key', (t) => {
  const f = t.context;
  const citus = defineTenancy({ engine: 'citus', tables: ['accounts'] });
  const pools = new TenantDBPool({ tenantService: new PgTenantService(f.source.appPool, { tenancy: citus }), sharedPool: f.source.appPool, tenancy: citus });
  const portability = new TenantPortability({ pools, admin: new TenantAdminService(f.source.adminPool, { tenancy: citus }), tenancy: citus });
  t.throws(() => new TenantMoveJobs({ portability, adminPool: f.source.adminPool as never, targets: {} }), { instanceOf: TypeError, message: /vanilla engine/ });
});
