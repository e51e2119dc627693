import anyTest, { type TestFn } from 'ava';
import type { AddressInfo } from 'node:net';
import { request as httpRequest, type Server } from 'node:http';
import { createExampleApp } from '../examples/app.js';
import type { MultitenantCore } from '../src/index.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { waitFor } from './helpers/wait.js';

const test = anyTest as TestFn<{ db: TestDatabase; server: Server; base: string; core: MultitenantCore; close: () => void }>;
const token = 'test-admin-token';

test.before(async (t) => {
  const db = await createTestDatabase({
    schema: `CREATE TABLE orders (
      tenant_id uuid NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY,
      item text NOT NULL, quantity integer NOT NULL CHECK (quantity > 0),
      created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (tenant_id, id))`,
    tenancy: { tables: ['orders'] },
  });
  const { app, core, close } = createExampleApp({ appPool: db.appPool, adminPool: db.adminPool, tenancy: db.config, adminToken: token, baseDomain: 'example.test' });
  await core.listen(db.appUrl);
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  t.context = { db, server, core, close, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
});

test.after.always(async (t) => {
  t.context.server?.close();
  await t.context.core?.close();
  t.context.close?.();
  await t.context.db?.drop();
});

// node:http rather than fetch: fetch may not set the Host header, which the subdomain strategy reads.
function call(t: { context: { base: string } }, method: string, path: string, options: { headers?: Record<string, string>; body?: unknown } = {}) {
  const payload = options.body === undefined ? undefined : typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
  const headers = { ...(payload !== undefined ? { 'content-type': 'application/json' } : {}), ...options.headers };
  return new Promise<{ status: number; type: string; body: any }>((resolve, reject) => {
    const request = httpRequest(t.context.base + path, { method, headers }, (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (text += chunk));
      response.on('end', () =>
        resolve({ status: response.statusCode ?? 0, type: String(response.headers['content-type'] ?? ''), body: text ? JSON.parse(text) : undefined }),
      );
    });
    request.on('error', reject);
    request.end(payload);
  });
}

const auth = { authorization: `Bearer ${token}` };

async function newTenant(t: { context: { base: string } }, slug: string) {
  const created = await call(t, 'POST', '/admin/tenants', { headers: auth, body: { slug, name: slug.toUpperCase() } });
  if (created.status !== 201) throw new Error(JSON.stringify(created));
  return created.body as { id: string; slug: string };
}

test('tenants create orders and each sees only its own', async (t) => {
  const acme = await newTenant(t, 'acme');
  const globex = await newTenant(t, 'globex');
  const made = await call(t, 'POST', '/api/orders', { headers: { 'x-tenant-id': acme.id }, body: { item: 'anvil', quantity: 2 } });
  t.is(made.status, 201);
  await call(t, 'POST', '/api/orders', { headers: { 'x-tenant-id': globex.id }, body: { item: 'widget' } });
  const acmeOrders = await call(t, 'GET', '/api/orders', { headers: { 'x-tenant-id': acme.id.toUpperCase() } });
  t.deepEqual(acmeOrders.body.orders.map((o: { item: string }) => o.item), ['anvil']);
  // another tenant's order id is simply not there
  const stolen = await call(t, 'GET', `/api/orders/${made.body.id}`, { headers: { 'x-tenant-id': globex.id } });
  t.is(stolen.status, 404);
  const dashboard = await call(t, 'GET', '/api/dashboard', { headers: { host: 'acme.example.test' } });
  t.deepEqual(dashboard.body, { tenant: { id: acme.id, slug: 'acme', name: 'ACME' }, orders: 1, items: 2 });
});

test('tenant errors are problem+json: 400 missing or malformed, 404 unknown, 403 suspended', async (t) => {
  const missing = await call(t, 'GET', '/api/orders');
  t.is(missing.status, 400);
  t.regex(missing.type, /application\/problem\+json/);
  t.is((await call(t, 'GET', '/api/orders', { headers: { 'x-tenant-id': "1' OR '1'='1" } })).status, 400);
  t.is((await call(t, 'GET', '/api/orders', { headers: { 'x-tenant-id': crypto.randomUUID() } })).status, 404);
  const initech = await newTenant(t, 'initech');
  t.is((await call(t, 'GET', '/api/orders', { headers: { 'x-tenant-id': initech.id } })).status, 200, 'cached as active');
  t.is((await call(t, 'POST', `/admin/tenants/${initech.id}/suspend`, { headers: auth })).status, 200);
  // The NOTIFY reaches the listener, which drops the cached tenant.
  const suspended = await waitFor(
    async () => {
      const response = await call(t, 'GET', '/api/orders', { headers: { 'x-tenant-id': initech.id } });
      return response.status === 403 ? response : undefined;
    },
    { message: 'the suspension reached the cache' },
  );
  t.is(suspended.body.code, 'LBMT_TENANT_SUSPENDED');
  t.is((await call(t, 'POST', `/admin/tenants/${initech.id}/activate`, { headers: auth })).status, 200);
  await waitFor(async () => (await call(t, 'GET', '/api/orders', { headers: { 'x-tenant-id': initech.id } })).status === 200, { message: 'the activation reached the cache' });
});

test('bad bodies are 422 and admin routes need the token', async (t) => {
  const hooli = await newTenant(t, 'hooli');
  const headers = { 'x-tenant-id': hooli.id };
  t.is((await call(t, 'POST', '/api/orders', { headers, body: '{not json' })).status, 422);
  t.is((await call(t, 'POST', '/api/orders', { headers, body: { item: '' } })).status, 422);
  t.is((await call(t, 'POST', '/api/orders', { headers, body: { item: 'x', quantity: -1 } })).status, 422);
  t.is((await call(t, 'GET', '/admin/tenants')).status, 401);
  t.is((await call(t, 'GET', '/admin/tenants', { headers: { authorization: 'Bearer wrong' } })).status, 403);
  t.is((await call(t, 'POST', '/admin/tenants', { headers: auth, body: { slug: 'Bad Slug', name: 'x' } })).status, 422);
  t.is((await call(t, 'POST', '/admin/tenants', { headers: auth, body: { slug: 'hooli', name: 'again' } })).status, 409);
});

test('metrics: Prometheus text at /metrics and per-tenant figures for admins', async (t) => {
  const tenant = await newTenant(t, 'umbrella');
  for (let i = 0; i < 3; i += 1) await call(t, 'GET', '/api/orders', { headers: { 'x-tenant-id': tenant.id } });
  const scrape = await new Promise<{ status: number; text: string }>((resolve, reject) => {
    httpRequest(t.context.base + '/metrics', (response) => {
      let text = '';
      response.on('data', (chunk) => (text += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, text }));
    }).on('error', reject).end();
  });
  t.is(scrape.status, 200);
  t.regex(scrape.text, /lbmt_http_requests_total\{outcome="resolved",status_class="2xx"\} \d+/);
  t.regex(scrape.text, /lbmt_tenant_transactions_total/);
  t.is((await call(t, 'GET', `/admin/metrics/${tenant.id}`)).status, 401);
  const figures = await call(t, 'GET', `/admin/metrics/${tenant.id}`, { headers: auth });
  t.is(figures.status, 200);
  t.is(figures.body.requests, 3);
  t.is(figures.body.errors, 0);
});

test('the example mounts the portability routes: NDJSON export, import and move targets by name, jobs', async (t) => {
  const tenant = await newTenant(t, 'portable');
  await call(t, 'POST', '/api/orders', { headers: { 'x-tenant-id': tenant.id }, body: { item: 'crate' } });
  const exported = await new Promise<{ status: number; type: string; text: string }>((resolve, reject) => {
    const request = httpRequest(`${t.context.base}/admin/tenants/${tenant.id}/export`, { headers: auth }, (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (text += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, type: String(response.headers['content-type']), text }));
    });
    request.on('error', reject);
    request.end();
  });
  t.is(exported.status, 200);
  t.regex(exported.type, /application\/x-ndjson/);
  const lines = exported.text.trim().split('\n');
  t.like(JSON.parse(lines.at(-1)!), { end: true, tables: [{ name: 'public.orders', rows: 1 }] });
  t.is((await call(t, 'POST', `/admin/tenants/${tenant.id}/move`, { headers: auth, body: { target: 'nowhere' } })).status, 422);
  t.is((await call(t, 'GET', `/admin/jobs/${crypto.randomUUID()}`, { headers: auth })).status, 404);
  t.is((await call(t, 'GET', `/admin/jobs/${crypto.randomUUID()}`)).status, 401);
});
