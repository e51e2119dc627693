/**
 * Prometheus metrics and the MetricsCollector, through real Koa apps on a real database. The core's
 * diagnostics channels are per process and every metrics instance hears them, so the tests that
 * count channel events are serial and close their metrics.
 */
import anyTest, { type TestFn } from 'ava';
import diagnostics from 'node:diagnostics_channel';
import Koa from 'koa';
import Router from '@koa/router';
import request from 'supertest';
import { Registry } from 'prom-client';
import {
  CHANNELS,
  SYSTEM_CHANNEL,
  createMultitenant,
  OnboardingError,
  PgTenantService,
  TenantAdminService,
  tenantQuery,
  withSystemContext,
  withTenantTransaction,
  type MultitenantCore,
} from '../src/index.js';
import { createQueryGuard, TenantGuardError, withAdminBypass } from '../src/guard/index.js';
import { createMetricsRouter, metricsMiddleware, multitenant, problemDetails } from '../src/koa/index.js';
import { createMetrics, MetricsCollector, type Metrics, type MetricsOptions } from '../src/metrics/index.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA, type TestDatabase } from './helpers/db.js';

interface Ctx {
  db: TestDatabase;
  acme: string;
  suspended: string;
  many: string[];
}
const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  const add = async (slug: string, status = 'active') =>
    (await db.adminPool.query(`INSERT INTO linkbay.tenants (slug, name, status) VALUES ($1, $1, $2) RETURNING id`, [slug, status])).rows[0].id as string;
  const many: string[] = [];
  for (let i = 0; i < 50; i += 1) many.push(await add(`tenant-${i}`));
  t.context = { db, acme: await add('acme'), suspended: await add('initech', 'suspended'), many };
});

test.after.always(async (t) => {
  await t.context.db?.drop();
});

type Sample = { name: string; labels: Record<string, string>; value: number };

/** GET /metrics through createMetricsRouter, parsed from the Prometheus text format. */
async function scrape(registry: Registry): Promise<Sample[]> {
  const koa = new Koa().use(createMetricsRouter({ registry }).routes());
  const response = await request(koa.callback()).get('/metrics').expect(200);
  if (response.headers['content-type'] !== registry.contentType) throw new Error(`content type ${response.headers['content-type']}`);
  return parse(response.text);
}

function parse(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`unparsable line ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[key!] = value!;
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

/** The value of the sample with exactly these labels (undefined when there is none). */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const want = JSON.stringify(Object.entries(labels).sort());
  return samples.find((s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === want)?.value;
}

function withMetrics(t: { teardown(fn: () => void): void }, options: Partial<MetricsOptions> = {}): { registry: Registry; metrics: Metrics } {
  const registry = new Registry();
  const metrics = createMetrics({ registry, ...options });
  t.teardown(() => metrics.close());
  return { registry, metrics };
}

/** problemDetails → metricsMiddleware → multitenant → routes that query under RLS, or throw. */
function tenantApp(t: { context: Ctx }, metrics: Metrics | undefined, collector?: MetricsCollector, core?: MultitenantCore) {
  const { db } = t.context;
  core ??= createMultitenant({ tenantService: new PgTenantService(db.appPool, { tenancy: db.config }), tenancy: db.config });
  const koa = new Koa();
  koa.silent = true;
  koa.use(problemDetails()).use(metricsMiddleware({ metrics, collector })).use(multitenant({ core }));
  const router = new Router();
  router.get('/whoami', async (ctx) => {
    const { rows } = await tenantQuery(db.appPool, undefined, `SELECT current_setting('app.tenant_id') AS id`, [], { tenancy: db.config });
    ctx.body = rows[0];
  });
  router.get('/boom', () => {
    throw new Error('boom');
  });
  koa.use(router.routes());
  return { server: koa.callback(), core };
}

test.serial('requests are counted by resolution outcome and status class, refused resolutions included', async (t) => {
  const { db, acme, suspended } = t.context;
  const core = createMultitenant({ tenantService: new PgTenantService(db.appPool, { tenancy: db.config }), tenancy: db.config });
  const { registry, metrics } = withMetrics(t, { core });
  const { server } = tenantApp(t, metrics, undefined, core);
  await request(server).get('/whoami').set('X-Tenant-ID', acme).expect(200);
  await request(server).get('/whoami').set('X-Tenant-ID', acme.toUpperCase()).expect(200);
  await request(server).get('/whoami').expect(400);
  await request(server).get('/whoami').set('X-Tenant-ID', 'garbage').expect(400);
  await request(server).get('/whoami').set('X-Tenant-ID', newTenantId()).expect(404);
  await request(server).get('/whoami').set('X-Tenant-ID', suspended).expect(403);
  await request(server).get('/boom').set('X-Tenant-ID', acme).expect(500);

  const samples = await scrape(registry);
  const requests = (outcome: string, status_class: string) => value(samples, 'lbmt_http_requests_total', { outcome, status_class });
  t.is(requests('resolved', '2xx'), 2);
  t.is(requests('missing', '4xx'), 1);
  t.is(requests('invalid', '4xx'), 1);
  t.is(requests('unknown', '4xx'), 1);
  t.is(requests('inactive', '4xx'), 1);
  t.is(requests('resolved', '5xx'), 1, 'a thrown error is counted as the 500 it becomes');
  t.is(samples.filter((s) => s.name === 'lbmt_http_requests_total').length, 6);
  t.is(value(samples, 'lbmt_http_request_duration_seconds_count', { outcome: 'resolved', status_class: '2xx' }), 2);
  t.is(value(samples, 'lbmt_http_request_duration_seconds_bucket', { outcome: 'resolved', status_class: '2xx', le: '+Inf' }), 2);

  const resolutions = (outcome: string, strategy: string) => value(samples, 'lbmt_tenant_resolutions_total', { outcome, strategy });
  t.is(resolutions('resolved', 'header'), 3);
  t.is(resolutions('missing', 'none'), 1);
  t.is(resolutions('invalid', 'none'), 1);
  t.is(resolutions('unknown', 'header'), 1);
  t.is(resolutions('inactive', 'header'), 1);
  t.is(value(samples, 'lbmt_tenant_resolution_duration_seconds_count', { outcome: 'resolved' }), 3);
  t.is(value(samples, 'lbmt_tenant_transactions_total', { outcome: 'commit', kind: 'single' }), 2);

  // Cache figures are read from the core's cache at scrape time: acme missed once, then hit twice.
  const stats = core.cache!.cache.stats();
  t.is(value(samples, 'lbmt_tenant_cache_lookups_total', { result: 'hit' }), stats.hits);
  t.is(value(samples, 'lbmt_tenant_cache_lookups_total', { result: 'miss' }), stats.misses);
  t.is(value(samples, 'lbmt_tenant_cache_lookups_total', { result: 'negative_hit' }), stats.negativeHits);
  t.is(stats.hits, 2);
  t.is(value(samples, 'lbmt_tenant_cache_entries', { kind: 'negative' }), 1);
  t.is(value(samples, 'lbmt_tenant_cache_evictions_total'), stats.evictions);
});

test.serial('rollbacks of tenant transactions and of tenantQuery are counted, by kind', async (t) => {
  const { db } = t.context;
  const { registry } = withMetrics(t);
  const tenant = newTenantId();
  await t.throwsAsync(
    withTenantTransaction(db.appPool, tenant, async (tx) => {
      await tx.query(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'never')`, [tenant]);
      throw new Error('changed my mind');
    }),
  );
  await t.throwsAsync(tenantQuery(db.appPool, tenant, 'SELECT 1/0'));
  await withTenantTransaction(db.appPool, tenant, (tx) => tx.query('SELECT 1'));
  await withTenantTransaction(db.appPool, tenant, () => 'sent nothing');
  const samples = await scrape(registry);
  const transactions = (outcome: string, kind: string) => value(samples, 'lbmt_tenant_transactions_total', { outcome, kind });
  t.is(transactions('rollback', 'transaction'), 1);
  t.is(transactions('rollback', 'single'), 1);
  t.is(transactions('commit', 'transaction'), 1);
  t.is(transactions('empty', 'transaction'), 1);
  t.is(transactions('commit', 'single'), 0);
  t.is(value(samples, 'lbmt_tenant_transaction_duration_seconds_count', { kind: 'transaction' }), 3);
});

test.serial('a backend killed mid-transaction and a COMMIT inside fn count as destroyed clients', async (t) => {
  const { db } = t.context;
  const { registry } = withMetrics(t);
  const tenant = newTenantId();
  const pool = db.pool(db.appUrl, { max: 1 });
  const before = await scrape(registry);
  t.is(value(before, 'lbmt_clients_destroyed_total', { reason: 'not-idle' }), 0, 'known reasons start at 0');
  await t.throwsAsync(
    withTenantTransaction(pool, tenant, async (tx) => {
      const { rows } = await tx.query('SELECT pg_backend_pid() AS pid');
      await db.superQuery('SELECT pg_terminate_backend($1)', [rows[0].pid]);
      await tx.query('SELECT 1');
    }),
  );
  let samples = await scrape(registry);
  const destroyed = (reason: string) => value(samples, 'lbmt_clients_destroyed_total', { reason })!;
  t.is(destroyed('connection-error') + destroyed('rollback-failed'), 1);
  t.is(destroyed('not-idle'), 0);
  await t.throwsAsync(withTenantTransaction(pool, tenant, (tx) => tx.query('COMMIT')));
  samples = await scrape(registry);
  t.is(destroyed('not-idle'), 1);
  t.is(value(samples, 'lbmt_tenant_transactions_total', { outcome: 'rollback', kind: 'transaction' }), 2);
});

test.serial('pool gauges read a real pg.Pool at scrape time', async (t) => {
  const { db } = t.context;
  const pool = db.pool(db.appUrl, { max: 2 });
  const { registry } = withMetrics(t, { pools: { app: pool } });
  const gauge = (samples: Sample[], state: string) => value(samples, 'lbmt_pool_connections', { pool: 'app', state });
  let samples = await scrape(registry);
  t.deepEqual([gauge(samples, 'total'), gauge(samples, 'idle'), gauge(samples, 'waiting')], [0, 0, 0]);
  // pg-pool hands the queued request the very client `a` released: track releases per checkout.
  const checkouts = [await pool.connect(), await pool.connect()].map((client) => ({ client, released: false }));
  const queued = pool.connect().then((client) => ({ client, released: false }));
  const release = (checkout: { client: { release(): void }; released: boolean }) => {
    if (!checkout.released) checkout.client.release();
    checkout.released = true;
  };
  try {
    await new Promise((resolve) => setImmediate(resolve));
    samples = await scrape(registry);
    t.deepEqual([gauge(samples, 'total'), gauge(samples, 'idle'), gauge(samples, 'waiting')], [2, 0, 1]);
    release(checkouts[0]!);
    release(await queued);
    samples = await scrape(registry);
    t.deepEqual([gauge(samples, 'total'), gauge(samples, 'idle'), gauge(samples, 'waiting')], [2, 1, 0]);
  } finally {
    for (const checkout of checkouts) release(checkout);
    release(await queued);
  }
});

test.serial('the tenant label has at most topN + 1 values over 50 tenants, and follows the busiest', async (t) => {
  const { many } = t.context;
  const { registry, metrics } = withMetrics(t, { tenantLabel: { topN: 5 } });
  const { server } = tenantApp(t, metrics);
  const send = (ids: string[], times: number) => Promise.all(ids.flatMap((id) => Array.from({ length: times }, () => request(server).get('/whoami').set('X-Tenant-ID', id).expect(200))));
  const busy = many.slice(45);
  const byTenant = async () => {
    const samples = (await scrape(registry)).filter((s) => s.name === 'lbmt_http_requests_by_tenant_total');
    t.true(new Set(samples.map((s) => s.labels.tenant)).size <= 6);
    t.true(samples.every((s) => s.labels.status_class === '2xx'));
    return new Map(samples.map((s) => [s.labels.tenant!, s.value]));
  };
  const sum = (series: Map<string, number>) => [...series.values()].reduce((a, b) => a + b, 0);

  await send(many, 1);
  await send(busy, 4);
  const first = await byTenant(); // re-ranked here: the 5 busiest get the labels
  t.is(sum(first), 70);
  await send(busy, 2);
  await send(many.slice(0, 45), 1);
  const second = await byTenant();
  t.deepEqual([...second.keys()].sort(), [...busy, 'other'].sort());
  for (const id of busy) t.is(second.get(id), 2, 'counted since the tenant got its label');
  t.is(second.get('other'), 115);
  t.is(sum(second), 125, 'the series add up to every tenant request');
  // Ten other tenants become the busiest lately (5 requests each against 7 in all for the five, but
  // older traffic counts half at each scrape): the five lose their series, their counts move to "other".
  await send(many.slice(0, 10), 5);
  const third = await byTenant();
  for (const id of busy) t.false(third.has(id));
  t.is(third.get('other'), 175);
  t.true(third.get('other')! >= second.get('other')!, 'other never decreases');
  const samples = await scrape(registry);
  t.true(samples.filter((s) => s.name === 'lbmt_http_requests_total').every((s) => !('tenant' in s.labels)));
});

test.serial('two createMetrics on two registries count independently, and close() unsubscribes', async (t) => {
  const { db, acme } = t.context;
  const registries = [new Registry(), new Registry()];
  const a = createMetrics({ registry: registries[0]! });
  const b = createMetrics({ registry: registries[1]!, prefix: 'app_' });
  const { server } = tenantApp(t, a);
  await request(server).get('/whoami').set('X-Tenant-ID', acme).expect(200);
  let [sa, sb] = [await scrape(registries[0]!), await scrape(registries[1]!)];
  t.is(value(sa, 'lbmt_http_requests_total', { outcome: 'resolved', status_class: '2xx' }), 1);
  t.is(sb.filter((s) => s.name === 'app_http_requests_total').length, 0, 'only the middleware of `a` observes requests');
  t.is(value(sa, 'lbmt_tenant_transactions_total', { outcome: 'commit', kind: 'single' }), 1);
  t.is(value(sb, 'app_tenant_transactions_total', { outcome: 'commit', kind: 'single' }), 1);
  b.close();
  await tenantQuery(db.appPool, acme, 'SELECT 1');
  [sa, sb] = [await scrape(registries[0]!), await scrape(registries[1]!)];
  t.is(value(sa, 'lbmt_tenant_transactions_total', { outcome: 'commit', kind: 'single' }), 2);
  t.is(value(sb, 'app_tenant_transactions_total', { outcome: 'commit', kind: 'single' }), 1, 'closed: no longer counting');
  a.close();
  a.close();
  for (const channel of [CHANNELS.transaction, CHANNELS.clientDestroyed, CHANNELS.tenantOperation, SYSTEM_CHANNEL]) t.false(diagnostics.channel(channel).hasSubscribers, channel);
  t.throws(() => createMetrics({ registry: registries[0]! }), { message: /already been registered/ });
  t.throws(() => createMetrics({ registry: undefined as never }), { instanceOf: TypeError });
});

test.serial('lifecycle operations are counted by outcome: succeeded, refused (nothing changed), failed', async (t) => {
  const { db } = t.context;
  const { registry } = withMetrics(t);
  const admin = new TenantAdminService(db.adminPool, { tenancy: db.config });
  const tenant = await admin.createTenant({ slug: 'counted', name: 'Counted' });
  await tenantQuery(db.adminPool, tenant.id, "INSERT INTO orders (tenant_id, item) VALUES ($1, 'x')", [tenant.id], { tenancy: db.config });
  await admin.suspendTenant(tenant.id);
  await t.throwsAsync(admin.suspendTenant('not-a-tenant-id'));
  await t.throwsAsync(admin.activateTenant('00000000-0000-4000-8000-000000000000'));
  await t.throwsAsync(admin.purgeTenant(tenant.id), { message: /only a deleted tenant/ });
  await admin.deleteTenant(tenant.id);
  const report = await admin.purgeTenant(tenant.id);
  t.true(report.complete);
  t.is((await db.superQuery('SELECT count(*)::int AS n FROM orders WHERE tenant_id = $1', [tenant.id])).rows[0].n, 0);
  // An onboarding whose seed throws: undone, a failure (not a refusal).
  const failing = new TenantAdminService(db.adminPool, { tenancy: db.config, onboarding: { seed: () => Promise.reject(new Error('seed broke')) } });
  await t.throwsAsync(failing.createTenant({ slug: 'doomed-counted', name: 'Doomed' }), { instanceOf: OnboardingError });
  const samples = await scrape(registry);
  const count = (operation: string, outcome: string) => value(samples, 'lbmt_tenant_operations_total', { operation, outcome });
  t.deepEqual(
    { create: [count('create', 'succeeded'), count('create', 'failed')], suspend: [count('suspend', 'succeeded'), count('suspend', 'refused')], activate: count('activate', 'refused') },
    { create: [1, 1], suspend: [1, 1], activate: 1 },
  );
  // Two purges succeeded: the deleted tenant's, and the failed onboarding's undo of its seeded rows.
  t.deepEqual([count('delete', 'succeeded'), count('purge', 'refused'), count('purge', 'succeeded'), count('purge', 'failed')], [1, 1, 2, 0]);
  t.is(count('move', 'failed'), 0, 'known series start at 0');
  t.is(value(samples, 'lbmt_tenant_move_sources_kept_total'), 0);
});

test.serial('the tenant-operation event names the canonical tenant, never the raw input of a refusal', async (t) => {
  const { db } = t.context;
  const admin = new TenantAdminService(db.adminPool, { tenancy: db.config });
  const events: unknown[] = [];
  const listen = (event: unknown) => events.push(event);
  diagnostics.subscribe(CHANNELS.tenantOperation, listen);
  t.teardown(() => diagnostics.unsubscribe(CHANNELS.tenantOperation, listen));
  const tenant = await admin.createTenant({ slug: 'evented', name: 'Evented' });
  await admin.suspendTenant(tenant.id.toUpperCase());
  await t.throwsAsync(admin.suspendTenant('<script>secret</script>'));
  t.like(events[0], { operation: 'create', outcome: 'succeeded', tenantId: tenant.id });
  t.like(events[1], { operation: 'suspend', outcome: 'succeeded', tenantId: tenant.id });
  t.like(events[2], { operation: 'suspend', outcome: 'refused', tenantId: null, code: 'LBMT_INVALID_TENANT_ID' });
  t.false(JSON.stringify(events).includes('secret'));
  t.true((events as Array<{ durationMs: number }>).every((e) => e.durationMs >= 0));
});

test.serial('guard refusals, bypassed statements and system contexts are counted', async (t) => {
  const { db, acme } = t.context;
  const { registry } = withMetrics(t);
  const guard = await createQueryGuard({ tables: [{ name: 'orders' }], tenancy: db.config });
  const tenancy = db.config;
  const error = await t.throwsAsync(withTenantTransaction(db.appPool, acme, (tx) => tx.query('SELECT * FROM orders'), { tenancy, guard }), { instanceOf: TenantGuardError });
  t.is(error?.code, 'LBMT_GUARD_REFUSED');
  await withTenantTransaction(db.appPool, acme, (tx) => withAdminBypass(() => tx.query('SELECT count(*) FROM orders'), { reason: 'a test' }), { tenancy, guard });
  await withSystemContext(db.adminPool, { reason: 'count every tenant' }, (sys) => sys.query('SELECT count(*) FROM orders'));
  await t.throwsAsync(withSystemContext(db.adminPool, { reason: 'fails', write: true }, () => Promise.reject(new Error('no'))));
  const samples = await scrape(registry);
  t.is(value(samples, 'lbmt_guard_statements_total', { outcome: 'blocked', code: 'LBMT_GUARD_REFUSED' }), 1);
  t.is(value(samples, 'lbmt_guard_statements_total', { outcome: 'reported', code: 'LBMT_GUARD_TOO_COMPLEX' }), 0);
  t.is(value(samples, 'lbmt_guard_bypassed_statements_total'), 1);
  t.is(value(samples, 'lbmt_system_contexts_total', { access: 'read', outcome: 'commit' }), 1);
  t.is(value(samples, 'lbmt_system_contexts_total', { access: 'write', outcome: 'rollback' }), 1);
  t.is(value(samples, 'lbmt_jobs_refused_total', { code: 'LBMT_JOB_TENANT_MISSING' }), 0);
});

test('MetricsCollector: requests, 5xx errors, mean and p95 over the latency window', (t) => {
  const collector = new MetricsCollector({ latencyWindow: 10 });
  for (let ms = 1; ms <= 100; ms += 1) collector.recordRequest('a', ms, ms % 40 === 0 ? 503 : ms === 7 ? 404 : 200);
  t.deepEqual(collector.getTenantMetrics('a'), { tenantId: 'a', requests: 100, errors: 2, avgLatencyMs: 50.5, p95LatencyMs: 100 });
  const wide = new MetricsCollector();
  for (const ms of [30, 10, 20, ...Array.from({ length: 97 }, (_, i) => 1000 - i)]) wide.recordRequest('b', ms, 200);
  t.is(wide.getTenantMetrics('b').p95LatencyMs, 995, 'nearest rank: the 95th of 100 sorted values');
  t.deepEqual(wide.getTenantMetrics('nobody'), { tenantId: 'nobody', requests: 0, errors: 0, avgLatencyMs: 0, p95LatencyMs: 0 });
});

test('MetricsCollector keeps at most maxTenants, dropping the least recently seen', (t) => {
  const collector = new MetricsCollector({ maxTenants: 3 });
  for (const id of ['a', 'b', 'c', 'a', 'd']) collector.recordRequest(id, 1, 200);
  t.is(collector.size, 3);
  t.deepEqual(collector.getAllTenantMetrics().map((m) => m.tenantId), ['c', 'a', 'd']);
  t.is(collector.getTenantMetrics('b').requests, 0);
  t.is(collector.getTenantMetrics('a').requests, 2);
  for (let i = 0; i < 10_000; i += 1) collector.recordRequest(`t${i}`, 1, 200);
  t.is(collector.size, 3);
  t.throws(() => new MetricsCollector({ maxTenants: 0 }), { message: /`maxTenants` must be an integer greater than 0/ });
});

test.serial('GET /admin/metrics/:tenantId serves the collector behind authorize', async (t) => {
  const { acme } = t.context;
  const collector = new MetricsCollector();
  const { server: tenants } = tenantApp(t, undefined, collector);
  await request(tenants).get('/whoami').set('X-Tenant-ID', acme).expect(200);
  await request(tenants).get('/whoami').set('X-Tenant-ID', acme).expect(200);
  await request(tenants).get('/boom').set('X-Tenant-ID', acme).expect(500);
  await request(tenants).get('/whoami').set('X-Tenant-ID', newTenantId()).expect(404);
  const authorize: Koa.Middleware = async (ctx, next) => {
    if (ctx.get('Authorization') !== 'Bearer s3cret') return ctx.throw(401);
    await next();
  };
  const admin = new Koa().use(problemDetails()).use(createMetricsRouter({ registry: new Registry(), collector, authorize }).routes()).callback();
  await request(admin).get(`/admin/metrics/${acme}`).expect(401);
  const response = await request(admin).get(`/admin/metrics/${acme.toUpperCase()}`).set('Authorization', 'Bearer s3cret').expect(200);
  t.like(response.body, { tenantId: acme, requests: 3, errors: 1 });
  t.true(response.body.avgLatencyMs > 0 && response.body.p95LatencyMs >= response.body.avgLatencyMs);
  t.is((await request(admin).get('/admin/metrics').set('Authorization', 'Bearer s3cret').expect(200)).body.length, 1, 'refused tenants are not tracked');
  await request(admin).get('/admin/metrics/not-an-id').set('Authorization', 'Bearer s3cret').expect(400);
  t.throws(() => createMetricsRouter({ registry: new Registry(), collector }), { message: /`authorize` is required/ });
});
