import test from 'ava';
import Koa from 'koa';
import request from 'supertest';
import { createMultitenant, PgTenantService, type MultitenantCore } from '../src/index.js';
import { multitenant } from '../src/koa/index.js';
import { createTestDatabase, ORDERS_SCHEMA } from './helpers/db.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function eventually(check: () => Promise<boolean>, withinMs: number): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < withinMs) {
    if (await check()) return Date.now() - started;
    await sleep(20);
  }
  throw new Error(`not within ${withinMs} ms`);
}

test('suspending a tenant through one instance makes the other refuse it within a second, even after its listener was killed', async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  t.teardown(() => db.drop());
  const id = (await db.adminPool.query(`INSERT INTO linkbay.tenants (slug, name) VALUES ('acme', 'Acme') RETURNING id`)).rows[0].id as string;

  // Two app instances, each with its own pool, cache (long ttl: only invalidation can refresh it) and listener.
  const instances: Array<{ core: MultitenantCore; server: ReturnType<Koa['callback']> }> = [];
  for (let i = 0; i < 2; i += 1) {
    const pool = db.pool(db.appUrl, { max: 2 });
    const core = createMultitenant({ tenantService: new PgTenantService(pool, { tenancy: db.config }), tenancy: db.config, cache: { ttlMs: 3_600_000 } });
    await core.listen(db.appUrl, { reconnectDelayMs: 50 });
    t.teardown(() => core.close());
    const app = new Koa();
    app.use(multitenant({ core }));
    app.use((ctx) => {
      ctx.body = { tenant: ctx.state.tenant.id };
    });
    instances.push({ core, server: app.callback() });
  }
  const [one, two] = instances as [(typeof instances)[0], (typeof instances)[0]];
  const status = (instance: typeof one) => request(instance.server).get('/').set('X-Tenant-ID', id).then((r) => r.status);
  t.is(await status(one), 200);
  t.is(await status(two), 200, 'instance two has acme cached');

  await db.adminPool.query(`UPDATE linkbay.tenants SET status = 'suspended' WHERE id = $1`, [id]);
  const tookMs = await eventually(async () => (await status(two)) === 403, 1_000);
  t.log(`instance two refused the suspended tenant after ${tookMs} ms`);

  // Kill instance two's listening connection: it reconnects, re-LISTENs and flushes its cache.
  await db.adminPool.query(`UPDATE linkbay.tenants SET status = 'active' WHERE id = $1`, [id]);
  await eventually(async () => (await status(two)) === 200, 1_000);
  const listenerPid = (await db.superQuery(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN linkbay_tenants' AND usename = $1`, [db.config.roles.app])).rows.map((r) => r.pid);
  t.is(listenerPid.length, 2);
  await db.superQuery('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [listenerPid]);
  await eventually(async () => {
    const { rows } = await db.superQuery(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN linkbay_tenants' AND usename = $1`, [db.config.roles.app]);
    return rows[0].n === 2;
  }, 3_000);
  t.is(await status(two), 200);
  await db.adminPool.query(`UPDATE linkbay.tenants SET status = 'suspended' WHERE id = $1`, [id]);
  await eventually(async () => (await status(two)) === 403 && (await status(one)) === 403, 1_000);
  t.pass();
});

test('a renamed slug stops resolving under the old name on the other instance', async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  t.teardown(() => db.drop());
  await db.adminPool.query(`INSERT INTO linkbay.tenants (slug, name) VALUES ('old-name', 'X')`);
  const core = createMultitenant({ tenantService: new PgTenantService(db.appPool, { tenancy: db.config }), tenancy: db.config, strategies: ['subdomain'], baseDomain: 'example.com', cache: { ttlMs: 3_600_000, negativeTtlMs: 3_600_000 } });
  await core.listen(db.appUrl);
  t.teardown(() => core.close());
  const app = new Koa();
  app.use(multitenant({ core }));
  app.use((ctx) => {
    ctx.body = 'ok';
  });
  const server = app.callback();
  await request(server).get('/').set('Host', 'old-name.example.com').expect(200);
  await request(server).get('/').set('Host', 'new-name.example.com').expect(404); // cached as negative
  await db.adminPool.query(`UPDATE linkbay.tenants SET slug = 'new-name' WHERE slug = 'old-name'`);
  const tookMs = await eventually(async () => (await request(server).get('/').set('Host', 'old-name.example.com')).status === 404, 1_000);
  t.true(tookMs < 1_000);
  t.is((await request(server).get('/').set('Host', 'new-name.example.com')).status, 200, 'the negative entry for the new name was dropped');
});
