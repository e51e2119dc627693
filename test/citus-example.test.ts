/**
 * The example app on a real Citus cluster, with examples/migrations-citus (what
 * docker/docker-compose.citus.yml runs): the registry as a reference table (its change
 * notification fires once, on the coordinator; updated_at set by the admin service), orders
 * distributed and isolated per tenant through the HTTP API, and doctor clean.
 */
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import pg from 'pg';
import request from 'supertest';
import { createExampleApp } from '../examples/app.js';
import { checkPosture, defineTenancy, formatPostureReport, migrate } from '../src/index.js';
import { useCitusCluster } from './helpers/citus-db.js';

const { citusTest, cluster } = useCitusCluster(test);

citusTest('the example app on Citus: registry notifications, per-tenant orders over HTTP, doctor clean', async (t) => {
  const c = cluster();
  const name = 'lbmt_example';
  await c.createDatabase(name);
  const tenancy = defineTenancy(JSON.parse(readFileSync(new URL('../examples/multitenant.citus.config.json', import.meta.url), 'utf8')));
  t.is(tenancy.engine, 'citus');
  const directory = new URL('../examples/migrations-citus/', import.meta.url).pathname;
  const migrated = await migrate({ databaseUrl: c.url(name), directory });
  t.is(migrated.applied.length, readdirSync(directory).filter((file) => file.endsWith('.sql')).length, 'every file of the example applies on Citus');
  const superPool = new pg.Pool({ connectionString: c.url(name), max: 2 });
  for (const role of Object.values(tenancy.roles)) await superPool.query(`ALTER ROLE ${role} PASSWORD 'example'`);
  const roleUrl = (role: string) => `postgres://${role}:example@127.0.0.1:${c.coordinator.port}/${name}`;
  const appPool = new pg.Pool({ connectionString: roleUrl(tenancy.roles.app), max: 2 });
  const adminPool = new pg.Pool({ connectionString: roleUrl(tenancy.roles.admin), max: 2 });
  for (const p of [appPool, adminPool, superPool]) p.on('error', () => undefined); // the cluster stops after the test
  const listener = new pg.Client({ connectionString: roleUrl(tenancy.roles.app) });
  listener.on('error', () => undefined);
  await listener.connect();
  const notifications: string[] = [];
  listener.on('notification', (n) => notifications.push(n.payload ?? ''));
  await listener.query('LISTEN linkbay_tenants');
  const { app, close } = createExampleApp({ appPool, adminPool, tenancy, adminToken: 'citus-example-admin-token' });
  t.teardown(async () => {
    close();
    await listener.end();
    await Promise.all([appPool.end(), adminPool.end(), superPool.end()]);
  });
  const server = request(app.callback());
  const auth = { authorization: 'Bearer citus-example-admin-token' };

  const acme = (await server.post('/admin/tenants').set(auth).send({ slug: 'acme', name: 'Acme' }).expect(201)).body;
  const globex = (await server.post('/admin/tenants').set(auth).send({ slug: 'globex', name: 'Globex' }).expect(201)).body;
  const kind = await superPool.query(`SELECT repmodel FROM pg_dist_partition WHERE logicalrelid = 'linkbay.tenants'::regclass`);
  t.is(kind.rows[0].repmodel, 't', 'the registry is a reference table');
  const renamed = (await server.patch(`/admin/tenants/${acme.id}`).set(auth).send({ name: 'Acme Inc' }).expect(200)).body;
  t.true(new Date(renamed.updatedAt) > new Date(acme.updatedAt), 'updated_at moves without the trigger');
  const deadline = Date.now() + 10_000;
  while (notifications.length < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  t.deepEqual(notifications.map((p) => JSON.parse(p).op), ['INSERT', 'INSERT', 'UPDATE'], 'one notification per change, from the coordinator only');

  await server.post('/api/orders').set('x-tenant-id', acme.id).send({ item: 'anvil', quantity: 2 }).expect(201);
  await server.post('/api/orders').set('x-tenant-id', globex.id).send({ item: 'widget' }).expect(201);
  const acmeOrders = (await server.get('/api/orders').set('x-tenant-id', acme.id).expect(200)).body.orders;
  t.deepEqual(acmeOrders.map((o: { item: string }) => o.item), ['anvil']);
  const globexOrders = (await server.get('/api/orders').set('x-tenant-id', globex.id).expect(200)).body.orders;
  t.deepEqual(globexOrders.map((o: { item: string }) => o.item), ['widget']);
  await server.get(`/api/orders/${acmeOrders[0].id}`).set('x-tenant-id', globex.id).expect(404);
  const orders = await superPool.query(`SELECT partmethod FROM pg_dist_partition WHERE logicalrelid = 'orders'::regclass`);
  t.is(orders.rows[0].partmethod, 'h');

  const report = await checkPosture(appPool, tenancy);
  t.true(report.ok, formatPostureReport(report));
});
