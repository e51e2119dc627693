/**
 * Guarded routes answer only through their guard, however the path is spelled (PITFALLS 27): the
 * example app's admin, migration, metrics and tenant routes, each tried with case variants, encoded
 * characters, doubled and dotted slashes, without credentials. Each answer must be the guard's
 * refusal (401, or 400 for a missing tenant) or no route at all (404), and nothing may change.
 */
import anyTest, { type TestFn } from 'ava';
import type { AddressInfo } from 'node:net';
import { request as httpRequest, type Server } from 'node:http';
import Koa from 'koa';
import { createExampleApp } from '../examples/app.js';
import { createTenantRouter, multitenant, problemDetails } from '../src/koa/index.js';
import { createMultitenant, PgTenantService, type MultitenantCore } from '../src/index.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';

const test = anyTest as TestFn<{ db: TestDatabase; server: Server; port: number; core: MultitenantCore; close: () => Promise<void>; tenantId: string }>;
const token = 'route-spelling-admin-token';

test.before(async (t) => {
  const db = await createTestDatabase({
    schema: `CREATE TABLE orders (
      tenant_id uuid NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY,
      item text NOT NULL, quantity integer NOT NULL CHECK (quantity > 0),
      created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (tenant_id, id))`,
    tenancy: { tables: ['orders'] },
  });
  // A high failure budget: this file makes hundreds of unauthenticated requests on purpose.
  const { app, core, close } = createExampleApp({ appPool: db.appPool, adminPool: db.adminPool, tenancy: db.config, adminToken: token, adminMaxFailures: 100_000 });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const { rows } = await db.superQuery<{ id: string }>(`INSERT INTO linkbay.tenants (slug, name) VALUES ('victim', 'Victim') RETURNING id::text`);
  await db.superQuery(`INSERT INTO orders (tenant_id, item, quantity) VALUES ($1, 'secret', 1)`, [rows[0]!.id]);
  t.context = { db, server, core, close, port: (server.address() as AddressInfo).port, tenantId: rows[0]!.id };
});

test.after.always(async (t) => {
  t.context.server?.close();
  await t.context.close?.();
  await t.context.core?.close();
  await t.context.db?.drop();
});

/** A raw request: the path goes on the wire exactly as given (no URL normalisation on the way). */
function raw(t: { context: { port: number } }, method: string, path: string, headers: Record<string, string> = {}, body?: string) {
  return new Promise<{ status: number; body: string; allow?: string }>((resolve, reject) => {
    const request = httpRequest({ host: '127.0.0.1', port: t.context.port, method, path, headers: { ...(body ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) } : {}), ...headers } }, (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (text += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: text, ...(response.headers.allow ? { allow: response.headers.allow } : {}) }));
    });
    request.on('error', reject);
    request.end(body);
  });
}

/** Spellings of `path` a router might match: case, percent-encoding, extra or dotted slashes. */
function spellings(path: string): string[] {
  const segments = path.split('/').filter(Boolean);
  const first = segments[0]!;
  const rest = segments.slice(1).join('/');
  const tail = rest ? `/${rest}` : '';
  const encodeFirst = (s: string) => `%${s.charCodeAt(0).toString(16)}${s.slice(1)}`;
  const alternate = (s: string) => [...s].map((c, i) => (i % 2 ? c.toUpperCase() : c.toLowerCase())).join('');
  return [
    path,
    path.toUpperCase(),
    `/${first[0]!.toUpperCase()}${first.slice(1)}${tail}`,
    `/${alternate(first)}${tail}`,
    `/${first.toUpperCase()}${tail}`,
    `/${first}${tail.toUpperCase()}`,
    `/${encodeFirst(first)}${tail}`,
    `/${encodeFirst(first).toUpperCase()}${tail}`,
    `/${first}${tail.replace(/\/(.)/, (_, c: string) => `/%${c.charCodeAt(0).toString(16).toUpperCase()}`)}`,
    `/${first}%2F${rest}`,
    `/${first}%2f${rest}`,
    `//${first}${tail}`,
    `/${first}/${tail}`,
    `${path}/`,
    `${path}//`,
    `/./${first}${tail}`,
    `/${first}/.${tail}`,
    `/x/../${first}${tail}`,
    `/${first};x${tail}`,
    `${path};x`,
    `${path}%00`,
    `${path}%20`,
    `/${first}${tail}?x=1`,
    `/${first}${tail}#frag`,
    `/%20${first}${tail}`,
    `/${first}%09${tail}`,
  ];
}

const CHANGES = ['POST', 'PATCH', 'DELETE'];

test('no spelling of an admin, migration or metrics route gets past the admin token', async (t) => {
  const { tenantId, db } = t.context;
  const routes: Array<[string, string]> = [
    ['GET', '/admin/tenants'],
    ['POST', '/admin/tenants'],
    ['GET', `/admin/tenants/${tenantId}`],
    ['PATCH', `/admin/tenants/${tenantId}`],
    ['DELETE', `/admin/tenants/${tenantId}`],
    ['POST', `/admin/tenants/${tenantId}/suspend`],
    ['POST', `/admin/tenants/${tenantId}/activate`],
    ['GET', `/admin/tenants/${tenantId}/export`],
    ['POST', `/admin/tenants/${tenantId}/move`],
    ['POST', `/admin/tenants/${tenantId}/import`],
    ['GET', `/admin/jobs/${tenantId}`],
    ['GET', '/admin/metrics'],
    ['GET', `/admin/metrics/${tenantId}`],
  ];
  const body = JSON.stringify({ slug: 'evil', name: 'Evil', target: 'x' });
  const wrong: Array<Record<string, string>> = [{}, { authorization: 'Bearer wrong-token-of-enough-length' }, { authorization: token }, { authorization: `Basic ${token}` }];
  let tried = 0;
  for (const [method, path] of routes) {
    for (const spelling of spellings(path)) {
      for (const headers of wrong) {
        const response = await raw(t, method, spelling, headers, CHANGES.includes(method) ? body : undefined);
        tried += 1;
        t.true([400, 401, 403, 404].includes(response.status), `${method} ${spelling} ${JSON.stringify(headers)} answered ${response.status}`);
        t.false(response.body.includes('Victim') || response.body.includes('secret'), `${method} ${spelling} leaked data`);
      }
    }
  }
  t.log(`${tried} requests`);
  const { rows } = await db.superQuery(`SELECT slug, status FROM linkbay.tenants ORDER BY slug`);
  t.deepEqual(rows, [{ slug: 'victim', status: 'active' }], 'nothing was created, suspended or deleted');
  // The control: the canonical spellings do reach their handlers with the token.
  const auth = { authorization: `Bearer ${token}` };
  t.is((await raw(t, 'GET', '/admin/tenants', auth)).status, 200);
  t.is((await raw(t, 'GET', `/admin/tenants/${tenantId}/export`, auth)).status, 200);
  t.is((await raw(t, 'GET', `/ADMIN/tenants`, auth)).status, 200, 'a case variant with the token reaches the route: only the guard decides');
});

test('OPTIONS and wrong methods of the admin and portability routes tell nothing without the token (allowedMethods is mounted)', async (t) => {
  const { tenantId } = t.context;
  const paths = ['/admin/tenants', `/admin/tenants/${tenantId}`, `/admin/tenants/${tenantId}/purge`, `/admin/tenants/${tenantId}/export`, `/admin/tenants/${tenantId}/move`, '/admin/audit', '/admin/openapi.json'];
  for (const path of paths) {
    for (const spelling of [path, path.toUpperCase(), `${path}/`]) {
      for (const method of ['OPTIONS', 'PUT', 'PATCH', 'TRACE']) {
        const response = await raw(t, method, spelling);
        t.true([401, 404].includes(response.status), `${method} ${spelling} answered ${response.status}`);
        t.is(response.allow, undefined, `${method} ${spelling} told its methods`);
      }
    }
  }
  const options = await raw(t, 'OPTIONS', `/admin/tenants/${tenantId}/export`, { authorization: `Bearer ${token}` });
  t.is(options.status, 200, 'with the token allowedMethods answers');
});

test('no spelling of a tenant route runs without a tenant', async (t) => {
  const routes: Array<[string, string]> = [
    ['GET', '/api/orders'],
    ['POST', '/api/orders'],
    ['GET', '/api/orders/1'],
    ['GET', '/api/dashboard'],
  ];
  for (const [method, path] of routes) {
    for (const spelling of spellings(path)) {
      const response = await raw(t, method, spelling, {}, method === 'POST' ? JSON.stringify({ item: 'x' }) : undefined);
      t.true([400, 404].includes(response.status), `${method} ${spelling} answered ${response.status}`);
      if (response.status === 400) t.regex(response.body, /LBMT_TENANT_REQUIRED/, `${method} ${spelling}`);
    }
  }
  const { rows } = await t.context.db.superQuery(`SELECT count(*)::int AS n FROM orders`);
  t.is(rows[0].n, 1, 'no order was written');
});

test('the admin token: Bearer required, a bare or wrong token refused, repeated failures limited', async (t) => {
  const { db } = t.context;
  const { app, close } = createExampleApp({ appPool: db.appPool, adminPool: db.adminPool, tenancy: db.config, adminToken: token, adminMaxFailures: 3 });
  t.teardown(close);
  const server = app.listen(0, '127.0.0.1');
  t.teardown(() => server.close());
  await new Promise((resolve) => server.once('listening', resolve));
  const other = { context: { port: (server.address() as AddressInfo).port } };
  t.is((await raw(other, 'GET', '/admin/tenants', { authorization: `bearer ${token}` })).status, 200, 'the scheme is case-insensitive');
  t.is((await raw(other, 'GET', '/admin/tenants', { authorization: token })).status, 401, 'a bare token is not a bearer token');
  t.is((await raw(other, 'GET', '/admin/tenants', { authorization: `Bearer ${token}x` })).status, 403);
  t.is((await raw(other, 'GET', '/admin/tenants', { authorization: `Bearer ${token.slice(0, -1)}` })).status, 403);
  const limited = await raw(other, 'GET', '/admin/tenants', { authorization: `Bearer ${token}` });
  t.is(limited.status, 429, 'after 3 failures even the right token waits');
  t.regex(limited.body, /too many failed attempts/);
});

test('createTenantRouter: no spelling reaches a handler without a tenant, routes added later and nested routers included', async (t) => {
  const { db } = t.context;
  const ran: string[] = [];
  const api = createTenantRouter({ prefix: '/api' });
  api.get('/early', (ctx) => { ran.push(ctx.path); ctx.body = 'ok'; });
  const nested = createTenantRouter();
  nested.get('/inner', (ctx) => { ran.push(ctx.path); ctx.body = 'ok'; });
  api.use('/nested', nested.routes());
  const app = new Koa();
  app.use(problemDetails());
  app.use(multitenant({ core: createMultitenant({ tenantService: new PgTenantService(db.appPool, { tenancy: db.config }) }), optional: true }));
  app.use(api.routes());
  api.get('/late', (ctx) => { ran.push(ctx.path); ctx.body = 'ok'; }); // after routes() was taken
  const server = app.listen(0, '127.0.0.1');
  t.teardown(() => server.close());
  await new Promise((resolve) => server.once('listening', resolve));
  const local = { context: { port: (server.address() as AddressInfo).port } };
  for (const path of ['/api/early', '/api/late', '/api/nested/inner']) {
    for (const spelling of spellings(path)) {
      const response = await raw(local, 'GET', spelling);
      t.true([400, 404].includes(response.status), `${spelling} answered ${response.status}`);
    }
  }
  t.deepEqual(ran, [], 'no handler ran');
  const headers = { 'x-tenant-id': t.context.tenantId };
  for (const path of ['/api/early', '/API/late', '/api/nested/inner']) t.is((await raw(local, 'GET', path, headers)).status, 200, path);
  t.is(ran.length, 3, 'with a tenant every route runs');
});
