/**
 * Per-tenant rate limiting through real Koa apps: tenants resolved from the registry, counters in
 * memory or in a PostgreSQL table shared by two app instances, used as the app role.
 */
import anyTest, { type TestFn } from 'ava';
import Koa from 'koa';
import Router from '@koa/router';
import request from 'supertest';
import type pg from 'pg';
import { createMultitenant, PgTenantService } from '../src/index.js';
import { multitenant, problemDetails, rateLimitTableSql, tenantRateLimit, type TenantRateLimitOptions } from '../src/koa/index.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';

interface Ctx {
  db: TestDatabase;
  acme: string;
  globex: string;
  pro: string;
}
const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  const db = await createTestDatabase();
  const add = async (slug: string, plan = 'default') =>
    (await db.adminPool.query(`INSERT INTO linkbay.tenants (slug, name, plan) VALUES ($1, $1, $2) RETURNING id`, [slug, plan])).rows[0].id as string;
  // The store's table comes from a migration run by the owner role; the app only uses it.
  const owner = db.pool(db.ownerUrl, { max: 1 });
  await owner.query(rateLimitTableSql({ role: db.config.roles.app }));
  t.context = { db, acme: await add('acme'), globex: await add('globex'), pro: await add('bigcorp', 'pro') };
});

test.after.always(async (t) => {
  await t.context.db?.drop();
});

/** problemDetails → multitenant (optional: public routes too) → tenantRateLimit → routes. */
function app(t: { context: Ctx }, options: TenantRateLimitOptions, appPool: pg.Pool = t.context.db.appPool) {
  const { db } = t.context;
  const core = createMultitenant({ tenantService: new PgTenantService(appPool, { tenancy: db.config }), tenancy: db.config });
  const koa = new Koa();
  koa.proxy = true;
  koa.silent = true;
  koa.use(problemDetails()).use(multitenant({ core, optional: true })).use(tenantRateLimit(options));
  const router = new Router();
  router.get('/ping', (ctx) => {
    ctx.body = { tenant: ctx.state.tenant?.id ?? null };
  });
  return koa.use(router.routes()).callback();
}

test('the memory store refuses request N+1 with a 429 problem and Retry-After; other tenants are unaffected', async (t) => {
  const { acme, globex } = t.context;
  const server = app(t, { points: 3, durationSeconds: 60 });
  for (const remaining of [2, 1, 0]) {
    const ok = await request(server).get('/ping').set('X-Tenant-ID', acme).expect(200);
    t.is(ok.headers['ratelimit-limit'], '3');
    t.is(ok.headers['ratelimit-remaining'], String(remaining));
    t.true(Number(ok.headers['ratelimit-reset']) >= 1 && Number(ok.headers['ratelimit-reset']) <= 60);
  }
  const refused = await request(server).get('/ping').set('X-Tenant-ID', acme).expect(429);
  t.regex(refused.headers['content-type']!, /application\/problem\+json/);
  t.like(refused.body, { status: 429, code: 'LBMT_RATE_LIMITED' });
  t.false(JSON.stringify(refused.body).includes(acme), 'the body does not echo the tenant');
  const retryAfter = Number(refused.headers['retry-after']);
  t.true(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `Retry-After ${refused.headers['retry-after']}`);
  t.is(refused.headers['ratelimit-remaining'], '0');
  const other = await request(server).get('/ping').set('X-Tenant-ID', globex).expect(200);
  t.is(other.headers['ratelimit-remaining'], '2');
});

test('requests without a tenant are not limited by tenantRateLimit', async (t) => {
  const server = app(t, { points: 1, durationSeconds: 60 });
  for (let i = 0; i < 5; i += 1) {
    const response = await request(server).get('/ping').expect(200);
    t.is(response.body.tenant, null);
    t.is(response.headers['ratelimit-limit'], undefined);
  }
});

test('one tenant spelled two ways shares one bucket', async (t) => {
  const { acme } = t.context;
  const server = app(t, { points: 2, durationSeconds: 60 });
  await request(server).get('/ping').set('X-Tenant-ID', acme).expect(200);
  const second = await request(server).get('/ping').set('X-Tenant-ID', `{${acme.toUpperCase()}}`).expect(200);
  t.is(second.headers['ratelimit-remaining'], '0');
  await request(server).get('/ping').set('X-Tenant-ID', acme.replaceAll('-', '')).expect(429);
});

test('limitsFor gives each plan its own limit', async (t) => {
  const { acme, pro } = t.context;
  const server = app(t, { points: 2, durationSeconds: 60, limitsFor: (tenant) => (tenant.plan === 'pro' ? { points: 5, durationSeconds: 60 } : undefined) });
  for (let i = 0; i < 2; i += 1) await request(server).get('/ping').set('X-Tenant-ID', acme).expect(200);
  await request(server).get('/ping').set('X-Tenant-ID', acme).expect(429);
  for (let i = 0; i < 5; i += 1) {
    const ok = await request(server).get('/ping').set('X-Tenant-ID', pro).expect(200);
    t.is(ok.headers['ratelimit-limit'], '5');
  }
  await request(server).get('/ping').set('X-Tenant-ID', pro).expect(429);
  const broken = app(t, { points: 2, durationSeconds: 60, limitsFor: () => ({ points: 0, durationSeconds: 60 }) });
  await request(broken).get('/ping').set('X-Tenant-ID', pro).expect(500);
});

test("'tenant+ip' keeps one bucket per client address within a tenant", async (t) => {
  const { acme } = t.context;
  const server = app(t, { points: 1, durationSeconds: 60, key: 'tenant+ip' });
  await request(server).get('/ping').set('X-Tenant-ID', acme).set('X-Forwarded-For', '203.0.113.1').expect(200);
  const second = await request(server).get('/ping').set('X-Tenant-ID', acme).set('X-Forwarded-For', '203.0.113.2').expect(200);
  t.is(second.headers['ratelimit-remaining'], '0', 'a bucket of its own, full');
  await request(server).get('/ping').set('X-Tenant-ID', acme).set('X-Forwarded-For', '203.0.113.1').expect(429);
  const custom = app(t, { points: 1, durationSeconds: 60, key: (ctx) => ctx.get('X-Api-Key') });
  await request(custom).get('/ping').set('X-Tenant-ID', acme).set('X-Api-Key', 'k'.repeat(500)).expect(200);
  await request(custom).get('/ping').set('X-Tenant-ID', acme).set('X-Api-Key', 'k'.repeat(500)).expect(429);
  t.is((await request(custom).get('/ping').set('X-Tenant-ID', acme).set('X-Api-Key', 'other').expect(200)).body.tenant, acme);
});

test('a bucket refills when its window ends', async (t) => {
  const { db } = t.context;
  const refill = (await db.adminPool.query(`INSERT INTO linkbay.tenants (slug, name) VALUES ('refill', 'Refill') RETURNING id`)).rows[0].id as string;
  // Counters in the table, so that the test ends the window (moves its end into the past) rather than waiting for it.
  const server = app(t, { points: 1, durationSeconds: 60, store: { pool: db.appPool } });
  await request(server).get('/ping').set('X-Tenant-ID', refill).expect(200);
  const refused = await request(server).get('/ping').set('X-Tenant-ID', refill).expect(429);
  t.true(Number(refused.headers['retry-after']) >= 1 && Number(refused.headers['retry-after']) <= 60);
  t.is((await request(server).get('/ping').set('X-Tenant-ID', refill)).status, 429, 'still refused within the window');
  const ended = await db.superQuery(`UPDATE linkbay.rate_limits SET expire = $1 WHERE key LIKE $2`, [Date.now() - 1, `%${refill}%`]);
  t.is(ended.rowCount, 1, 'one bucket');
  const fresh = await request(server).get('/ping').set('X-Tenant-ID', refill).expect(200);
  t.is(fresh.headers['ratelimit-remaining'], '0', 'a new window, with its first request counted');
  await request(server).get('/ping').set('X-Tenant-ID', refill).expect(429);
});

test('the PostgreSQL store gives two app instances on one database one combined limit', async (t) => {
  const { db, globex, pro } = t.context;
  // Two instances: each its own app-role pool, core and limiter, sharing only the database.
  const instances = [0, 1].map(() => app(t, { points: 4, durationSeconds: 60, store: { pool: db.pool(db.appUrl, { max: 2 }) } }, db.pool(db.appUrl, { max: 2 })));
  const remaining: string[] = [];
  for (let i = 0; i < 4; i += 1) {
    const ok = await request(instances[i % 2]!).get('/ping').set('X-Tenant-ID', globex).expect(200);
    remaining.push(ok.headers['ratelimit-remaining']!);
  }
  t.deepEqual(remaining, ['3', '2', '1', '0']);
  await request(instances[0]!).get('/ping').set('X-Tenant-ID', globex).expect(429);
  await request(instances[1]!).get('/ping').set('X-Tenant-ID', globex).expect(429);
  // Concurrent requests through both instances: the upsert is atomic, exactly 4 get through.
  const statuses = await Promise.all(Array.from({ length: 12 }, (_, i) => request(instances[i % 2]!).get('/ping').set('X-Tenant-ID', pro).then((r) => r.status)));
  t.is(statuses.filter((s) => s === 200).length, 4);
  t.is(statuses.filter((s) => s === 429).length, 8);
  const { rows } = await db.superQuery(`SELECT key, points FROM linkbay.rate_limits WHERE key = $1`, [`lbmt_4_60:${globex}`]);
  t.deepEqual(rows, [{ key: `lbmt_4_60:${globex}`, points: 6 }]);
});

test('the app role uses the store table but cannot create one; a missing table is an error, not a free pass', async (t) => {
  const { db, acme } = t.context;
  const { rows } = await db.appPool.query(`SELECT has_schema_privilege(current_user, 'linkbay', 'CREATE') AS can_create, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user`);
  t.deepEqual(rows, [{ can_create: false, rolsuper: false, rolbypassrls: false }]);
  const server = app(t, { points: 5, durationSeconds: 60, store: { pool: db.appPool, table: 'no_such_table' } });
  const response = await request(server).get('/ping').set('X-Tenant-ID', acme).expect(500);
  t.is(response.body.status, 500);
  t.false(JSON.stringify(response.body).includes('no_such_table'), 'the database error is not shown');
});

test('bad options are refused when the middleware is built', (t) => {
  t.throws(() => tenantRateLimit({ points: 0, durationSeconds: 60 }), { instanceOf: TypeError, message: /`points`/ });
  t.throws(() => tenantRateLimit({ points: 1, durationSeconds: 0.5 }), { instanceOf: TypeError, message: /`durationSeconds`/ });
  t.throws(() => tenantRateLimit({ points: 1, durationSeconds: 1, store: { pool: {} as never } }), { message: /`store.pool`/ });
  t.throws(() => tenantRateLimit({ points: 1, durationSeconds: 1, store: { pool: { query: async () => ({}) }, table: 'x"; DROP TABLE y' } }), { message: /`store.table`/ });
  t.throws(() => tenantRateLimit({ points: 1, durationSeconds: 1, key: 'ip' as never }), { message: /`key`/ });
  t.throws(() => rateLimitTableSql({ role: 'app"; --' }), { message: /`role`/ });
});
