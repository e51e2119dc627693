import anyTest, { type TestFn } from 'ava';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import Router from '@koa/router';
import request from 'supertest';
import { createMultitenant, PgTenantService, tenantQuery, TenantContext, type MultitenantOptions, type TenantService } from '../src/index.js';
import { createTenantRouter, multitenant, problemDetails } from '../src/koa/index.js';
import { createTestDatabase, ORDERS_SCHEMA, type TestDatabase } from './helpers/db.js';

interface Ctx {
  db: TestDatabase;
  acme: string;
  globex: string;
  suspended: string;
  deleted: string;
  many: Array<{ id: string; slug: string }>;
}
const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  const add = async (slug: string, status = 'active', domain: string | null = null) =>
    (await db.adminPool.query(`INSERT INTO linkbay.tenants (slug, name, status, domain) VALUES ($1, $1, $2, $3) RETURNING id`, [slug, status, domain])).rows[0].id as string;
  const acme = await add('acme', 'active', 'shop.acme.test');
  const globex = await add('globex');
  const suspended = await add('initech', 'suspended');
  const deleted = await add('hooli', 'deleted');
  const many: Ctx['many'] = [];
  for (let i = 0; i < 50; i += 1) {
    const slug = `tenant-${i}`;
    const id = await add(slug);
    many.push({ id, slug });
    await tenantQuery(db.appPool, id, `INSERT INTO orders (tenant_id, item) VALUES ($1, $2)`, [id, slug]);
  }
  t.context = { db, acme, globex, suspended, deleted, many };
});

test.after.always(async (t) => {
  await t.context.db?.drop();
});

/** A real app: resolution, then a query under RLS that reports what PostgreSQL saw. */
function app(t: { context: Ctx }, options: Partial<MultitenantOptions> & { optional?: boolean; trustProxy?: boolean; proxy?: boolean } = {}) {
  const { db } = t.context;
  const core = createMultitenant({ tenantService: new PgTenantService(db.appPool, { tenancy: db.config }), tenancy: db.config, ...options });
  const koa = new Koa();
  koa.proxy = options.proxy ?? false;
  koa.use(problemDetails());
  koa.use(multitenant({ core, optional: options.optional, trustProxy: options.trustProxy }));
  const router = new Router();
  router.get('/public', (ctx) => {
    ctx.body = { public: true, tenant: ctx.state.tenant?.id ?? null };
  });
  const tenantRoutes = createTenantRouter();
  tenantRoutes.get('/whoami', async (ctx) => {
    const { rows } = await tenantQuery(db.appPool, undefined, `SELECT current_setting('app.tenant_id') AS setting, array_agg(item) AS items FROM orders`, [], { tenancy: db.config });
    ctx.body = { tenant: ctx.state.tenant.id, context: TenantContext.getTenantId(), setting: rows[0].setting, items: rows[0].items ?? [], path: ctx.path };
  });
  koa.use(router.routes()).use(tenantRoutes.routes());
  return { server: koa.callback(), core };
}

test('header strategy: the tenant reaches ctx.state, TenantContext and PostgreSQL', async (t) => {
  const { server } = app(t);
  const response = await request(server).get('/whoami').set('X-Tenant-ID', t.context.acme).expect(200);
  t.deepEqual(response.body, { tenant: t.context.acme, context: t.context.acme, setting: t.context.acme, items: [], path: '/whoami' });
});

test('the same UUID spelled five ways is one tenant and one cache entry', async (t) => {
  const { server, core } = app(t);
  const id = t.context.acme;
  for (const spelling of [id, id.toUpperCase(), `{${id}}`, id.replaceAll('-', ''), `urn:uuid:${id}`]) {
    const response = await request(server).get('/whoami').set('X-Tenant-ID', spelling).expect(200);
    t.is(response.body.tenant, id);
  }
  t.like(core.cache!.cache.stats(), { size: 1, misses: 1, hits: 4 });
});

const badHeaders: Array<[string, string]> = [
  ['empty', ''],
  ['whitespace', '   '],
  ['SQL text', "' OR 1=1; --"],
  ['a path', '../../etc/passwd'],
  ['a slug instead of an id', 'acme'],
  ['10 KB', 'a'.repeat(10 * 1024)],
  ['two ids', '6f9619ff-8b86-d011-b42d-00c04fc964ff, 6f9619ff-8b86-d011-b42d-00c04fc964fe'],
];
for (const [label, value] of badHeaders) {
  test(`an X-Tenant-ID header that is ${label} is a 400 problem that does not echo it`, async (t) => {
    const { server } = app(t);
    const response = await request(server).get('/whoami').set('X-Tenant-ID', value).expect(400);
    t.regex(response.headers['content-type']!, /application\/problem\+json/);
    t.is(response.body.status, 400);
    if (value.trim()) t.false(JSON.stringify(response.body).includes(value.slice(0, 20)));
  });
}

test('a request with no tenant at all is a 400 problem', async (t) => {
  const { server } = app(t);
  const response = await request(server).get('/whoami').expect(400);
  t.is(response.body.code, 'LBMT_TENANT_REQUIRED');
});

test('NUL bytes and non-ASCII in the header are refused with 400', async (t) => {
  const { server } = app(t);
  const listening = (await import('node:http')).createServer(server).listen(0, '127.0.0.1');
  await new Promise((resolve) => listening.once('listening', resolve));
  t.teardown(() => listening.close());
  const port = (listening.address() as AddressInfo).port;
  for (const raw of [Buffer.from(`${t.context.acme}\u0000`, 'latin1'), Buffer.from('ünïcödé', 'latin1'), Buffer.from('tënant', 'utf8')]) {
    const status = await rawRequest(port, Buffer.concat([Buffer.from('GET /whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Tenant-ID: '), raw, Buffer.from('\r\n\r\n')]));
    t.is(status, 400, raw.toString('latin1'));
  }
});

test('unknown is 404, suspended and deleted are 403, and the body names no other tenant', async (t) => {
  const { server } = app(t);
  const unknown = await request(server).get('/whoami').set('X-Tenant-ID', crypto.randomUUID()).expect(404);
  t.is(unknown.body.code, 'LBMT_TENANT_NOT_FOUND');
  for (const id of [t.context.suspended, t.context.deleted]) {
    const response = await request(server).get('/whoami').set('X-Tenant-ID', id).expect(403);
    t.is(response.body.code, 'LBMT_TENANT_SUSPENDED');
    t.false(JSON.stringify(response.body).includes('initech') || JSON.stringify(response.body).includes('hooli'));
  }
});

test('subdomain strategy: hosts are normalised (case, port, trailing dot)', async (t) => {
  const { server } = app(t, { strategies: ['subdomain'], baseDomain: 'example.com' });
  for (const host of ['acme.example.com', 'ACME.Example.COM', 'acme.example.com:8443', 'acme.example.com.']) {
    const response = await request(server).get('/whoami').set('Host', host).expect(200);
    t.is(response.body.tenant, t.context.acme, host);
  }
  await request(server).get('/whoami').set('Host', 'a.b.example.com').expect(400);
  await request(server).get('/whoami').set('Host', 'example.com').expect(400);
  await request(server).get('/whoami').set('Host', 'nobody.example.com').expect(404);
  await request(server).get('/whoami').set('Host', 'evil.com').expect(400);
});

test('X-Forwarded-Host is ignored unless the proxy is trusted', async (t) => {
  const untrusted = app(t, { strategies: ['subdomain'], baseDomain: 'example.com' });
  const spoofed = await request(untrusted.server).get('/whoami').set('Host', 'globex.example.com').set('X-Forwarded-Host', 'acme.example.com').expect(200);
  t.is(spoofed.body.tenant, t.context.globex);
  const trusted = app(t, { strategies: ['subdomain'], baseDomain: 'example.com', trustProxy: true });
  const forwarded = await request(trusted.server).get('/whoami').set('Host', 'internal:8080').set('X-Forwarded-Host', 'acme.example.com').expect(200);
  t.is(forwarded.body.tenant, t.context.acme);
  const viaKoa = app(t, { strategies: ['subdomain'], baseDomain: 'example.com', proxy: true });
  t.is((await request(viaKoa.server).get('/whoami').set('X-Forwarded-Host', 'acme.example.com').expect(200)).body.tenant, t.context.acme);
});

test('domain strategy finds tenants by their custom domain', async (t) => {
  const { server } = app(t, { strategies: ['subdomain', 'domain'], baseDomain: 'example.com' });
  t.is((await request(server).get('/whoami').set('Host', 'Shop.Acme.Test').expect(200)).body.tenant, t.context.acme);
  await request(server).get('/whoami').set('Host', 'shop.nobody.test').expect(404);
});

test('path strategy strips the prefix so routers match the rest', async (t) => {
  const { server } = app(t, { strategies: ['path'] });
  const response = await request(server).get('/t/acme/whoami?x=1').expect(200);
  t.is(response.body.tenant, t.context.acme);
  t.is(response.body.path, '/whoami');
  await request(server).get('/t/nobody/whoami').expect(404);
  await request(server).get('/t/%2e%2e/whoami').expect(400);
  await request(server).get('/whoami').expect(400);
});

test('path strategy by id: /orgs/<uuid>/... names the tenant by id, in any spelling, and a slug there is refused', async (t) => {
  const { server } = app(t, { strategies: [{ path: { prefix: '/orgs', by: 'id' } }] });
  const { acme, globex } = t.context;
  for (const spelling of [acme, acme.toUpperCase(), acme.replaceAll('-', '')]) {
    const response = await request(server).get(`/orgs/${spelling}/whoami`).expect(200);
    t.deepEqual([response.body.tenant, response.body.setting, response.body.path], [acme, acme, '/whoami'], spelling);
  }
  t.is((await request(server).get(`/orgs/${globex}/whoami`).expect(200)).body.tenant, globex);
  t.is((await request(server).get('/orgs/acme/whoami').expect(400)).body.code, 'LBMT_INVALID_TENANT_ID');
  t.is((await request(server).get(`/orgs/${crypto.randomUUID()}/whoami`).expect(404)).body.code, 'LBMT_TENANT_NOT_FOUND');
  await request(server).get(`/t/${acme}/whoami`).expect(400); // the default prefix is not this one
});

test('header strategy with its own header name: { header: "X-Org" } reads that header and no other', async (t) => {
  const { server } = app(t, { strategies: [{ header: 'X-Org' }] });
  const { acme, globex } = t.context;
  const response = await request(server).get('/whoami').set('X-Org', acme).expect(200);
  t.deepEqual([response.body.tenant, response.body.setting], [acme, acme]);
  t.is((await request(server).get('/whoami').set('x-org', globex).expect(200)).body.tenant, globex, 'header names are case-insensitive');
  t.is((await request(server).get('/whoami').set('X-Tenant-ID', acme).expect(400)).body.code, 'LBMT_TENANT_REQUIRED', 'X-Tenant-ID is not read');
  t.is((await request(server).get('/whoami').set('X-Org', 'acme').expect(400)).body.code, 'LBMT_INVALID_TENANT_ID');
});

test('a custom strategy can name the tenant', async (t) => {
  const { server } = app(t, { strategies: [{ custom: (req) => (req.header('x-api-key') === 'key-of-globex' ? { by: 'slug', value: 'globex' } : undefined), name: 'api-key' }] });
  t.is((await request(server).get('/whoami').set('X-Api-Key', 'key-of-globex').expect(200)).body.tenant, t.context.globex);
  await request(server).get('/whoami').set('X-Api-Key', 'nope').expect(400);
});

test('strategies that agree are fine; header and subdomain disagreeing is refused', async (t) => {
  const { server } = app(t, { strategies: ['header', 'subdomain'], baseDomain: 'example.com' });
  await request(server).get('/whoami').set('Host', 'acme.example.com').set('X-Tenant-ID', t.context.acme).expect(200);
  const conflict = await request(server).get('/whoami').set('Host', 'acme.example.com').set('X-Tenant-ID', t.context.globex).expect(400);
  t.is(conflict.body.code, 'LBMT_TENANT_CONFLICT');
});

test('optional lets public routes through, and tenant routers still require a tenant', async (t) => {
  const { server } = app(t, { optional: true });
  t.deepEqual((await request(server).get('/public').expect(200)).body, { public: true, tenant: null });
  const required = await request(server).get('/whoami').expect(400);
  t.is(required.body.code, 'LBMT_TENANT_REQUIRED');
  await request(server).get('/public').set('X-Tenant-ID', 'garbage').expect(400);
  t.is((await request(server).get('/whoami').set('X-Tenant-ID', t.context.acme).expect(200)).body.tenant, t.context.acme);
});

test('1,000 concurrent requests over 50 tenants each get their own tenant and rows', async (t) => {
  const { db } = t.context;
  // The registry service, counting its lookups: concurrent misses of one key are one lookup.
  const registry = new PgTenantService(db.appPool, { tenancy: db.config });
  let lookups = 0;
  const tenantService: TenantService = {
    getTenantById: (id) => ((lookups += 1), registry.getTenantById(id)),
    getTenantByDomain: (domain) => ((lookups += 1), registry.getTenantByDomain(domain)),
    getTenantBySubdomain: (slug) => ((lookups += 1), registry.getTenantBySubdomain(slug)),
  };
  const { server, core } = app(t, { strategies: ['header', 'subdomain'], baseDomain: 'example.com', tenantService });
  const listening = (await import('node:http')).createServer(server).listen(0, '127.0.0.1');
  await new Promise((resolve) => listening.once('listening', resolve));
  t.teardown(() => listening.close());
  const agent = request(listening);
  const { many } = t.context;
  const responses = await Promise.all(
    Array.from({ length: 1000 }, (_, i) => {
      const tenant = many[i % many.length]!;
      const call = agent.get('/whoami');
      return (i % 2 ? call.set('X-Tenant-ID', tenant.id) : call.set('Host', `${tenant.slug}.example.com`)).then((response) => ({ tenant, response }));
    }),
  );
  for (const { tenant, response } of responses) {
    if (response.status !== 200 || response.body.tenant !== tenant.id || response.body.setting !== tenant.id || response.body.items.join() !== tenant.slug) {
      t.fail(`request for ${tenant.slug} got ${response.status} ${JSON.stringify(response.body)}`);
    }
  }
  // 50 tenants, each named by id and by slug: at most 100 lookups, whatever the interleaving.
  t.true(lookups <= 100, `${lookups} lookups`);
  // Every key is cached now: the same 1,000 again are all hits, without a lookup.
  const before = core.cache!.cache.stats();
  const again = await Promise.all(
    Array.from({ length: 1000 }, (_, i) => {
      const tenant = many[i % many.length]!;
      const call = agent.get('/whoami');
      return (i % 2 ? call.set('X-Tenant-ID', tenant.id) : call.set('Host', `${tenant.slug}.example.com`)).then((response) => response.body.tenant === tenant.id);
    }),
  );
  t.true(again.every(Boolean));
  const after = core.cache!.cache.stats();
  t.is(after.hits - before.hits, 1000);
  t.is(after.misses, before.misses);
  t.true(lookups <= 100, `${lookups} lookups in all`);
});

function rawRequest(port: number, payload: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.end(payload));
    let data = '';
    socket.on('data', (chunk) => (data += chunk.toString('latin1')));
    socket.on('error', reject);
    socket.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0)));
  });
}
