import test from 'ava';
import Koa from 'koa';
import request from 'supertest';
import { createMultitenant, PgTenantService, TenantAdminService, type MultitenantCore } from '../src/index.js';
import { createAdminRouter, multitenant, requireBearerToken } from '../src/koa/index.js';
import { createTestDatabase, ORDERS_SCHEMA, type TestDatabase } from './helpers/db.js';
import { startTcpProxy } from './helpers/tcp-proxy.js';
import { waitFor } from './helpers/wait.js';

type ListenerEvent = 'connected' | 'disconnected' | 'change';

/**
 * An app instance: its own app-role pool, a cache that only invalidation can refresh (one-hour ttl)
 * and a listener on `listenUrl`, whose events are recorded. With `admin`, it also serves the admin API.
 */
async function instance(t: { teardown(fn: () => unknown): void }, db: TestDatabase, options: { listenUrl?: string; admin?: boolean } = {}) {
  const pool = db.pool(db.appUrl, { max: 2 });
  const core: MultitenantCore = createMultitenant({ tenantService: new PgTenantService(pool, { tenancy: db.config }), tenancy: db.config, cache: { ttlMs: 3_600_000 } });
  const events: ListenerEvent[] = [];
  const listener = await core.listen(options.listenUrl ?? db.appUrl, {
    reconnectDelayMs: 20,
    maxReconnectDelayMs: 100,
    onEvent: (event) => events.push(event.type),
  });
  t.teardown(() => core.close());
  const app = new Koa();
  if (options.admin) {
    const admin = new TenantAdminService(db.adminPool, { tenancy: db.config });
    app.use(createAdminRouter(admin, { authorize: requireBearerToken({ token: 'admin-token-for-tests' }) }).routes());
  }
  app.use(multitenant({ core }));
  app.use((ctx) => {
    ctx.body = { tenant: ctx.state.tenant.id };
  });
  const server = app.callback();
  const status = (id: string) => request(server).get('/').set('X-Tenant-ID', id).then((r) => r.status);
  const count = (type: ListenerEvent) => events.filter((e) => e === type).length;
  return { core, server, status, count, listener: listener! };
}

const listeningBackends = async (db: TestDatabase, user: string) =>
  (await db.superQuery(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN linkbay_tenants' AND usename = $1`, [user])).rows.map(
    (r) => r.pid as number,
  );

async function acmeDatabase(t: { teardown(fn: () => unknown): void }) {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  t.teardown(() => db.drop());
  const id = (await db.adminPool.query(`INSERT INTO linkbay.tenants (slug, name) VALUES ('acme', 'Acme') RETURNING id`)).rows[0].id as string;
  return { db, id };
}

test('suspending a tenant through one instance\'s admin API makes the other refuse it, also after its listener was killed and came back', async (t) => {
  const { db, id } = await acmeDatabase(t);
  const one = await instance(t, db, { admin: true });
  const two = await instance(t, db);
  t.is(await one.status(id), 200);
  t.is(await two.status(id), 200, 'instance two has acme cached');
  const admin = (path: string) => request(one.server).post(`/admin/tenants/${id}/${path}`).set('Authorization', 'Bearer admin-token-for-tests').then((r) => r.status);

  t.is(await admin('suspend'), 200);
  await waitFor(async () => (await two.status(id)) === 403 && (await one.status(id)) === 403, { message: 'both instances heard of the suspension' });

  t.is(await admin('activate'), 200);
  await waitFor(async () => (await two.status(id)) === 200, { message: 'instance two heard of the activation' });
  // Kill instance two's listening connection: it reconnects and LISTENs again.
  const pid = two.listener.processId!;
  t.true((await listeningBackends(db, db.config.roles.app)).includes(pid), "instance two's LISTEN session");
  const connectedBefore = two.count('connected');
  await db.superQuery('SELECT pg_terminate_backend($1)', [pid]);
  await waitFor(() => two.count('connected') > connectedBefore && two.listener.processId !== pid, { message: 'instance two listens again' });
  t.is(await admin('suspend'), 200);
  await waitFor(async () => (await two.status(id)) === 403 && (await one.status(id)) === 403, { message: 'both refuse it after the reconnect' });
});

/** Instance two, listening through a TCP relay that the test can make hang (`hold`) and release. */
async function heldListener(t: { teardown(fn: () => unknown): void }, db: TestDatabase) {
  const proxy = await startTcpProxy(db.appUrl);
  t.teardown(() => proxy.close());
  const two = await instance(t, db, { listenUrl: proxy.url(db.appUrl) });
  /** Kills the listening backend while reconnecting hangs; resolves once the listener saw the loss. */
  const lose = async () => {
    proxy.hold();
    await db.superQuery('SELECT pg_terminate_backend($1)', [two.listener.processId]);
    await waitFor(() => two.count('disconnected') === 1 && proxy.waiting === 1, { message: 'the listener lost its connection and is reconnecting' });
  };
  return { two, proxy, lose };
}

test('a lost listener flushes the cache at once: a change made while it cannot hear is not served stale', async (t) => {
  const { db, id } = await acmeDatabase(t);
  const { two, proxy, lose } = await heldListener(t, db);
  t.is(await two.status(id), 200, 'acme cached');
  await lose();
  // No NOTIFY can reach instance two now: only the flush on loss makes it see this change.
  await db.adminPool.query(`UPDATE linkbay.tenants SET status = 'suspended' WHERE id = $1`, [id]);
  t.is(await two.status(id), 403, 'flushed when the listener was lost');
  t.is(two.count('connected'), 1, 'not reconnected meanwhile');
  proxy.release();
  await waitFor(() => two.count('connected') === 2, { message: 'the listener came back' });
});

test('a listener that comes back flushes again: changes made while it was away are not served stale', async (t) => {
  const { db, id } = await acmeDatabase(t);
  const { two, proxy, lose } = await heldListener(t, db);
  await lose();
  // While it is away the tenant is cached again (as active), then changed: no NOTIFY reaches it.
  t.is(await two.status(id), 200);
  await db.adminPool.query(`UPDATE linkbay.tenants SET status = 'suspended' WHERE id = $1`, [id]);
  t.is(await two.status(id), 200, 'served from the cache while the listener is away: what the flush after reconnecting repairs');
  proxy.release();
  await waitFor(() => two.count('connected') === 2, { message: 'the listener came back' });
  t.is(await two.status(id), 403, 'flushed after reconnecting');
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
  await waitFor(async () => (await request(server).get('/').set('Host', 'old-name.example.com')).status === 404, { message: 'the old name stopped resolving' });
  t.is((await request(server).get('/').set('Host', 'new-name.example.com')).status, 200, 'the negative entry for the new name was dropped');
});
