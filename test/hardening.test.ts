/**
 * Findings of the red-team pass over the example app (issue 8), each as a regression test: no
 * custom domain that catches requests addressed by IP or to localhost, 422 instead of 500 for values
 * the database refuses, bodies nested too deep, secrets in database URLs, server timeouts.
 */
import anyTest, { type TestFn } from 'ava';
import type { AddressInfo } from 'node:net';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { createExampleApp, hardenServer } from '../examples/app.js';
import { createMultitenant, PgTenantService, type MultitenantCore } from '../src/index.js';
import { redactUrl } from '../src/database-url.js';
import { problemFor } from '../src/koa/index.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';

const test = anyTest as TestFn<{ db: TestDatabase; server: Server; port: number; core: MultitenantCore; close: () => Promise<void>; tenantId: string }>;
const token = 'hardening-admin-token-0123456789';

test.before(async (t) => {
  const db = await createTestDatabase({
    schema: `CREATE TABLE orders (
      tenant_id uuid NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY,
      item text NOT NULL, quantity integer NOT NULL CHECK (quantity > 0),
      created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (tenant_id, id))`,
    tenancy: { tables: ['orders'] },
  });
  const { app, core, close } = createExampleApp({ appPool: db.appPool, adminPool: db.adminPool, tenancy: db.config, adminToken: token });
  const server = hardenServer(app.listen(0, '127.0.0.1'));
  await new Promise((resolve) => server.once('listening', resolve));
  const { rows } = await db.superQuery<{ id: string }>(`INSERT INTO linkbay.tenants (slug, name) VALUES ('acme', 'Acme') RETURNING id::text`);
  t.context = { db, server, core, close, port: (server.address() as AddressInfo).port, tenantId: rows[0]!.id };
});

test.after.always(async (t) => {
  t.context.server?.close();
  await t.context.close?.();
  await t.context.core?.close();
  await t.context.db?.drop();
});

function call(t: { context: { port: number } }, method: string, path: string, headers: Record<string, string>, body?: string) {
  return new Promise<{ status: number; body: any }>((resolve, reject) => {
    const all = { ...(body !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) } : {}), ...headers };
    const request = httpRequest({ host: '127.0.0.1', port: t.context.port, method, path, headers: all }, (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (text += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: text ? JSON.parse(text) : undefined }));
    });
    request.on('error', reject);
    request.end(body);
  });
}

test('values the database would refuse are 422, never 500: int4 overflow, NUL, deep nesting', async (t) => {
  const tenant = { 'x-tenant-id': t.context.tenantId };
  const order = (body: unknown) => call(t, 'POST', '/api/orders', tenant, typeof body === 'string' ? body : JSON.stringify(body));
  t.is((await order({ item: 'ok', quantity: 2 ** 31 - 1 })).status, 201, 'the largest int4 is fine');
  t.is((await order({ item: 'big', quantity: 2 ** 31 })).status, 422);
  t.is((await order({ item: 'big', quantity: 2 ** 53 })).status, 422);
  t.is((await order({ item: 'a\u0000b' })).status, 422);
  const deep = '{"item":"x","n":' + '['.repeat(5000) + ']'.repeat(5000) + '}';
  const nested = await order(deep);
  t.is(nested.status, 422);
  t.regex(nested.body.detail, /nest deeper/);
  const admin = { authorization: `Bearer ${token}` };
  let metadata = '{}';
  for (let i = 0; i < 5000; i += 1) metadata = `{"a":${metadata}}`;
  const created = await call(t, 'POST', '/admin/tenants', admin, `{"slug":"deep","name":"Deep","metadata":${metadata}}`);
  t.is(created.status, 422);
  const { rows } = await t.context.db.superQuery(`SELECT count(*)::int AS n FROM linkbay.tenants WHERE slug = 'deep'`);
  t.is(rows[0].n, 0);
});

test('a data exception raised by PostgreSQL maps to 422 without the server text', async (t) => {
  const error = await t.throwsAsync(t.context.db.appPool.query(`SELECT 'not a number: secret-42'::int`));
  const problem = problemFor(error);
  t.is(problem.status, 422);
  t.is(problem.code, 'LBMT_DATA_INVALID');
  t.false(String(problem.detail).includes('secret-42'));
  const other = await t.throwsAsync(t.context.db.appPool.query('SELECT * FROM no_such_table'));
  t.is(problemFor(other).status, 500, 'other database errors stay 500');
});

test('a tenant that owns the domain 127.0.0.1 or localhost does not receive requests addressed by IP', async (t) => {
  const { db } = t.context;
  // Written past the admin API's validation (e.g. by hand in psql): the strategy must not trust it.
  await db.superQuery(`INSERT INTO linkbay.tenants (slug, name, domain) VALUES ('ip', 'Ip', '127.0.0.1'), ('lh', 'Lh', 'localhost')`);
  const core = createMultitenant({ tenantService: new PgTenantService(db.appPool, { tenancy: db.config }), strategies: ['domain'], baseDomain: 'example.test' });
  for (const host of ['127.0.0.1', '127.0.0.1:3000', 'localhost', 'LOCALHOST:80', 'localhost.']) {
    const resolution = await core.resolve({ host, path: '/', header: () => undefined }, { optional: true });
    t.is(resolution, undefined, host);
  }
  await db.superQuery(`INSERT INTO linkbay.tenants (slug, name, domain) VALUES ('real', 'Real', 'shop.real.example')`);
  const real = await core.resolve({ host: 'shop.real.example', path: '/', header: () => undefined });
  t.is(real?.tenant.slug, 'real', 'a real custom domain still resolves');
});

test('redactUrl hides the password in the authority and in the query string', (t) => {
  t.is(redactUrl('postgres://app:s3cret@db/x'), 'postgres://app:***@db/x');
  t.is(redactUrl('postgres://app@db/x?password=s3cret&sslmode=require'), 'postgres://app@db/x?password=***&sslmode=require');
  t.is(redactUrl('postgres://app@db/x?sslpassword=k3y&PASSWORD=s3cret'), 'postgres://app@db/x?sslpassword=***&PASSWORD=***');
  t.is(redactUrl('postgres://app@db/x?password=a&password=b'), 'postgres://app@db/x?password=***');
  t.is(redactUrl('not a url'), '<unparseable url>');
});

test('the example server bounds slow and idle clients', async (t) => {
  const server = hardenServer(createServer());
  t.is(server.headersTimeout, 10_000);
  t.is(server.requestTimeout, 30_000);
  t.is(server.keepAliveTimeout, 5_000);
  t.is(server.maxConnections, 1_000);
  t.is(t.context.server.requestTimeout, 30_000, 'and the app under test runs with it');
});
