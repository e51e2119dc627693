/**
 * The admin API as a client sees it (issue 13): its OpenAPI 3.1 document, validated and checked
 * against the routes the routers really register; every route refused without and with a wrong
 * token; invalid bodies, each a 4xx problem+json naming what is wrong. After every refusal the
 * registry is byte for byte what it was.
 */
import anyTest, { type TestFn } from 'ava';
import Koa from 'koa';
import type Router from '@koa/router';
import request from 'supertest';
import { Validator } from '@seriousme/openapi-schema-validator';
import { TenantAdminService, TenantDBPool, PgTenantService, TenantMigrationService, defineTenancy, type TenantIdType } from '../src/index.js';
import { newTenantSchema } from '../src/koa/index.js';
import { TenantPortability } from '../src/portability/index.js';
import { createAdminRouter, createMigrationRouter, createPortabilityRouter, openApiDocument, requireBearerToken } from '../src/koa/index.js';
import { createTestDatabase, ORDERS_SCHEMA, type TestDatabase } from './helpers/db.js';

interface Context {
  db: TestDatabase;
  pools: TenantDBPool;
  server: ReturnType<Koa['callback']>;
  routers: Router[];
  tenantId: string;
}
const test = anyTest as TestFn<Context>;
const TOKEN = 'admin-api-test-token-0123456789';
const AUTH = { authorization: `Bearer ${TOKEN}` };

test.before(async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  const admin = new TenantAdminService(db.adminPool, { tenancy: db.config });
  // Failures are counted per client: the wrong-token checks below make many on purpose.
  const authorize = requireBearerToken({ token: TOKEN, maxFailures: 10_000 });
  const pools = new TenantDBPool({ tenantService: new PgTenantService(db.appPool, { tenancy: db.config }), sharedPool: db.appPool });
  const portability = createPortabilityRouter(new TenantPortability({ pools, admin, tenancy: db.config }), { authorize });
  const router = createAdminRouter(admin, { authorize, openapi: { routers: [portability], securitySchemes: { adminToken: { type: 'http', scheme: 'bearer' } } } });
  const app = new Koa();
  app.use(router.routes()).use(router.allowedMethods());
  app.use(portability.routes()).use(portability.allowedMethods());
  const tenantId = (await admin.createTenant({ slug: 'acme', name: 'Acme', domain: 'acme.example.com', metadata: { seats: 3 } })).id;
  await admin.createTenant({ slug: 'gone', name: 'Gone' }).then((gone) => admin.deleteTenant(gone.id));
  t.context = { db, pools, server: app.callback(), routers: [router, portability], tenantId };
});
test.after.always(async (t) => {
  await t.context.pools?.closeAll();
  await t.context.db?.drop();
});

const http = (t: { context: Context }) => request(t.context.server);

/** The whole registry, as the superuser sees it: compared before and after refusals. */
async function registry(t: { context: Context }): Promise<string> {
  const { rows } = await t.context.db.superQuery(`SELECT to_jsonb(t) AS row FROM linkbay.tenants t ORDER BY id`);
  return JSON.stringify(rows);
}

/** Every route the routers registered, as [method, path with the test tenant's id]; HEAD is GET's twin. */
function registeredRoutes(t: { context: Context }): Array<[string, string]> {
  const routes: Array<[string, string]> = [];
  for (const router of t.context.routers) {
    for (const layer of router.stack) {
      for (const method of layer.methods) {
        if (method !== 'HEAD') routes.push([method, String(layer.path).replace(':id', t.context.tenantId)]);
      }
    }
  }
  return routes;
}

test('GET /admin/openapi.json: behind authorize, a valid OpenAPI 3.1 document listing every registered route', async (t) => {
  t.is((await http(t).get('/admin/openapi.json')).status, 401);
  t.is((await http(t).get('/ADMIN/openapi.json')).status, 401, 'no spelling of the path skips authorize');
  const response = await http(t).get('/admin/openapi.json').set(AUTH);
  t.is(response.status, 200);
  t.regex(response.type, /json/);
  const doc = response.body;
  const validator = new Validator();
  const result = await validator.validate(doc);
  t.deepEqual(result.errors, undefined);
  t.true(result.valid);
  t.is(validator.version, '3.1');
  // Walked from router.stack: a route added without documentation fails here.
  const paths = doc.paths as Record<string, Record<string, { operationId: string; responses: Record<string, unknown> }>>;
  const routes = t.context.routers.flatMap((router) => router.stack.flatMap((layer) => layer.methods.filter((m) => m !== 'HEAD').map((m) => [m, String(layer.path), layer.name] as const)));
  t.true(routes.length >= 13, `${routes.length} routes`);
  for (const [method, path, name] of routes) {
    const operation = paths[path.replace(/:(\w+)/g, '{$1}')]?.[method.toLowerCase()];
    t.truthy(operation, `${method} ${path} is documented`);
    t.is(operation?.operationId, name);
    t.truthy(operation?.responses['401'], `${method} ${path} says it can be refused`);
  }
  const documented = Object.values(paths).reduce((n, item) => n + Object.keys(item).length, 0);
  t.is(documented, routes.length, 'nothing documented that is not served');
  // The schemas are the ones the service validates with: every rule of the create body is there.
  const created = doc.components.schemas.NewTenant;
  t.is(created.additionalProperties, false, 'unknown fields are refused');
  t.deepEqual(created.required.sort(), ['name', 'slug']);
  t.is(created.properties.slug.pattern, '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$');
  t.is(created.properties.name.maxLength, 200);
  t.is(created.properties.plan.pattern, '^[a-z0-9][a-z0-9_-]{0,63}$');
  t.deepEqual(doc.components.schemas.TenantPatch.required, undefined);
  t.deepEqual(doc.security, [{ adminToken: [] }]);
  t.is(doc.paths['/admin/tenants'].post.requestBody.content['application/json'].schema.$ref, '#/components/schemas/NewTenant');
  t.is(doc.paths['/admin/tenants/{id}/import'].post.requestBody.content['application/x-ndjson'] !== undefined, true, 'the import body is NDJSON');
});

test('the document for every tenant id type, and for the migration router, is valid too', async (t) => {
  const db = t.context.db;
  for (const type of ['uuid', 'bigint', 'text'] as TenantIdType[]) {
    const tenancy = defineTenancy({ tenantIdType: type, tables: ['orders'] });
    const admin = new TenantAdminService(db.adminPool, { tenancy });
    const migration = createMigrationRouter(new TenantMigrationService({ pools: new TenantDBPool({ tenantService: new PgTenantService(db.appPool, { tenancy }), sharedPool: db.appPool }), tenancy } as never), { authorize: async (_ctx, next) => next(), targets: {}, prefix: '/legacy' });
    const router = createAdminRouter(admin, { authorize: async (_ctx, next) => next() });
    const doc = openApiDocument({ tenantIdType: type, routers: [router, migration] }) as { paths: Record<string, object>; components: { schemas: Record<string, { required?: string[] }> } };
    const result = await new Validator().validate(doc as never);
    t.true(result.valid, `${type}: ${JSON.stringify(result.errors)}`);
    t.truthy(doc.paths['/legacy/tenants/{id}/move'], 'the migration router under its own prefix');
    t.is(doc.components.schemas.NewTenant!.required!.includes('id'), type === 'text', `${type}: id required only for text ids`);
  }
});

test.serial('every admin route without a token is 401, with a wrong one 401 or 403, and changes nothing', async (t) => {
  const before = await registry(t);
  const routes = registeredRoutes(t);
  const body = { slug: 'intruder', name: 'Intruder' };
  for (const [method, path] of routes) {
    for (const [label, headers] of [
      ['no token', {}],
      ['a wrong token', { authorization: 'Bearer wrong-token-wrong-token-00' }],
      ['another scheme', { authorization: `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}` }],
      ['the token in upper case', { authorization: `Bearer ${TOKEN.toUpperCase()}` }],
      ['the token cut short', { authorization: `Bearer ${TOKEN.slice(0, -1)}` }],
    ] as Array<[string, Record<string, string>]>) {
      for (const spelling of [path, path.toUpperCase().replace(t.context.tenantId.toUpperCase(), t.context.tenantId), path.replace('/admin/', '/admin//')]) {
        const call = http(t)[method.toLowerCase() as 'get'](spelling).set(headers);
        const response = method === 'GET' || method === 'DELETE' ? await call : await call.send(body);
        t.true([401, 403].includes(response.status) || (spelling.includes('//') && response.status === 404), `${method} ${spelling} with ${label}: ${response.status}`);
        if (response.status !== 404) t.is(response.type, 'application/problem+json', `${method} ${spelling} with ${label}`);
      }
    }
  }
  t.is(await registry(t), before, 'the registry is unchanged');
  // The same routes with the token do answer (the refusals above were authorization's).
  t.is((await http(t).get(`/admin/tenants/${t.context.tenantId}`).set(AUTH)).status, 200);
});

const deep = (levels: number) => {
  let value: Record<string, unknown> = {};
  for (let i = 1; i < levels; i += 1) value = { a: value };
  return value;
};

test.serial('invalid bodies: each field wrong in each way, unknown fields, wrong types, size, media type, malformed and deep JSON; all 4xx problems naming the field, nothing written', async (t) => {
  const before = await registry(t);
  const ok = { slug: 'fresh', name: 'Fresh' };
  // [body, status, what the detail must name, the field in `errors` (when one field is refused)]
  const cases: Array<[unknown, number, RegExp, string?]> = [
    [{ name: 'x' }, 422, /`slug`/, 'slug'],
    [{ ...ok, slug: 5 }, 422, /`slug`/, 'slug'],
    [{ ...ok, slug: 'Bad Slug' }, 422, /`slug`/, 'slug'],
    [{ ...ok, slug: '-acme' }, 422, /`slug`/, 'slug'],
    [{ ...ok, slug: 'a'.repeat(64) }, 422, /`slug`/, 'slug'],
    [{ ...ok, slug: null }, 422, /`slug`/, 'slug'],
    [{ slug: 'fresh' }, 422, /`name`/, 'name'],
    [{ ...ok, name: '' }, 422, /`name`/, 'name'],
    [{ ...ok, name: '   ' }, 422, /`name`/, 'name'],
    [{ ...ok, name: 'x'.repeat(201) }, 422, /`name`/, 'name'],
    [{ ...ok, name: 'a\u0000b' }, 422, /`name`/, 'name'],
    [{ ...ok, name: ['Fresh'] }, 422, /`name`/, 'name'],
    [{ ...ok, domain: 'Fresh.Example.com' }, 422, /`domain`/, 'domain'],
    [{ ...ok, domain: 'fresh.example.com:443' }, 422, /`domain`/, 'domain'],
    [{ ...ok, domain: 'fresh.example.com.' }, 422, /`domain`/, 'domain'],
    [{ ...ok, domain: 'fresh..example.com' }, 422, /`domain`/, 'domain'],
    [{ ...ok, domain: 'localhost' }, 422, /`domain`.*localhost/, 'domain'],
    [{ ...ok, domain: '127.0.0.1' }, 422, /`domain`/, 'domain'],
    [{ ...ok, domain: 'intranet' }, 422, /`domain`/, 'domain'],
    [{ ...ok, domain: 42 }, 422, /`domain`/, 'domain'],
    [{ ...ok, plan: 'Gold Plan' }, 422, /`plan`/, 'plan'],
    [{ ...ok, plan: '' }, 422, /`plan`/, 'plan'],
    [{ ...ok, plan: 'p'.repeat(65) }, 422, /`plan`/, 'plan'],
    [{ ...ok, plan: null }, 422, /`plan`/, 'plan'],
    [{ ...ok, metadata: [1, 2] }, 422, /`metadata`/, 'metadata'],
    [{ ...ok, metadata: 'seats=3' }, 422, /`metadata`/, 'metadata'],
    [{ ...ok, metadata: null }, 422, /`metadata`/, 'metadata'],
    [{ ...ok, metadata: { blob: 'x'.repeat(17_000) } }, 422, /`metadata`.*16 KB/, 'metadata'],
    [{ ...ok, metadata: { x: 'a\u0000b' } }, 422, /`metadata`.*NUL/, 'metadata'],
    [{ ...ok, metadata: deep(33) }, 422, /`metadata` must not nest deeper than 32/, 'metadata'],
    [{ ...ok, databaseUrl: 'mysql://db/x' }, 422, /`databaseUrl`/, 'databaseUrl'],
    [{ ...ok, databaseUrl: 'not a url' }, 422, /`databaseUrl`/, 'databaseUrl'],
    [{ ...ok, databaseUrl: 5432 }, 422, /`databaseUrl`/, 'databaseUrl'],
    [{ ...ok, id: 'not-a-uuid' }, 400, /`id`.*uuid/],
    [{ ...ok, id: 12 }, 400, /`id`/],
    [{ ...ok, status: 'active' }, 422, /unknown field `status`/, 'status'],
    [{ ...ok, Slug: 'typo' }, 422, /unknown field `Slug`/, 'Slug'],
    [{ slug: 'BAD', name: '' }, 422, /`slug`.*; .*`name`/],
  ];
  for (const [body, status, detail, field] of cases) {
    const response = await http(t).post('/admin/tenants').set(AUTH).send(body as object);
    const label = JSON.stringify(body).slice(0, 80);
    t.is(response.status, status, label);
    t.is(response.type, 'application/problem+json', label);
    t.regex(String(response.body.detail), detail, label);
    if (field) t.deepEqual(response.body.errors?.map((e: { pointer: string }) => e.pointer), [`#/${field}`], label);
  }
  // The same rules on PATCH, which may name any of the fields and never the id.
  const patch = (body: unknown) => http(t).patch(`/admin/tenants/${t.context.tenantId}`).set(AUTH).send(body as object);
  for (const [body, detail] of [
    [{ slug: 'NO' }, /`slug`/],
    [{ domain: 'localhost' }, /`domain`/],
    [{ metadata: [] }, /`metadata`/],
    [{ id: t.context.tenantId }, /`id`/],
    [{ status: 'deleted' }, /unknown field `status`/],
    [{}, /nothing to change/],
  ] as Array<[unknown, RegExp]>) {
    const response = await patch(body);
    t.is(response.status, 422, JSON.stringify(body));
    t.regex(String(response.body.detail), detail);
  }
  // The body as a whole: not an object, not JSON, too big, the wrong media type, nested too deep.
  const raw = (text: string, type = 'application/json') => http(t).post('/admin/tenants').set(AUTH).set('content-type', type).send(text);
  const whole: Array<[Promise<request.Response>, number, RegExp]> = [
    [raw('[{"slug":"fresh","name":"Fresh"}]'), 422, /JSON object/],
    [raw('null'), 422, /JSON object/],
    [raw('"fresh"'), 422, /JSON object/],
    [raw('42'), 422, /JSON object/],
    [raw(''), 422, /JSON object|not valid JSON/],
    [raw('{"slug":'), 422, /not valid JSON/],
    [raw("{'slug':'fresh'}"), 422, /not valid JSON/],
    [raw('{"slug":"fresh","name":"Fresh","__proto__":{"admin":true}}'), 422, /__proto__/],
    [raw(JSON.stringify({ ...ok, metadata: { blob: 'x'.repeat(70_000) } })), 413, /at most 65536 bytes/],
    [raw(JSON.stringify(ok), 'text/plain'), 415, /application\/json/],
    [raw('slug=fresh&name=Fresh', 'application/x-www-form-urlencoded'), 415, /application\/json/],
    // 64 KB nest 30,000 levels: refused before JSON.stringify or jsonb could overflow the stack.
    [raw(`{"slug":"fresh","name":"Fresh","metadata":${'['.repeat(30_000)}${']'.repeat(30_000)}}`), 422, /nest deeper than 34/],
    [raw(`${'{"a":'.repeat(5000)}{}${'}'.repeat(5000)}`), 422, /nest deeper/],
  ];
  for (const [call, status, detail] of whole) {
    const response = await call;
    t.is(response.status, status, String(detail));
    t.is(response.type, 'application/problem+json');
    t.regex(String(response.body.detail), detail);
  }
  const unsent = await http(t).post('/admin/tenants').set(AUTH);
  t.is(unsent.status, 415, 'no body and no media type');
  t.is(await registry(t), before, 'nothing was written');
  // And a valid body still creates (so the refusals above were the bodies').
  t.is((await http(t).post('/admin/tenants').set(AUTH).send(ok)).status, 201);
});

test('the documented schemas never refuse what the service accepts, and refuse what they can express', async (t) => {
  const { default: Ajv2020 } = await import('ajv/dist/2020.js');
  for (const type of ['uuid', 'bigint', 'text'] as TenantIdType[]) {
    const doc = openApiDocument({ tenantIdType: type, routers: [] }) as { components: { schemas: Record<string, object> } };
    const ajv = new (Ajv2020 as unknown as typeof import('ajv').default)({ strict: false });
    for (const [name, schema] of Object.entries(doc.components.schemas)) ajv.addSchema(schema, `#/components/schemas/${name}`);
    const documented = ajv.getSchema('#/components/schemas/NewTenant')!;
    const served = newTenantSchema(type);
    const id = { uuid: '{6F9619FF-8B86-D011-B42D-00C04FC964FF}', bigint: '42', text: 'Acme.EU' }[type];
    const base = type === 'text' ? { id, slug: 'acme', name: 'Acme' } : { slug: 'acme', name: 'Acme' };
    const accepted = [
      base,
      { ...base, id },
      { ...base, domain: 'acme.example.com', plan: 'pro_2', metadata: { seats: 3, nested: { a: [1, 2] } }, databaseUrl: 'postgresql://app@db/acme' },
      { ...base, domain: null, databaseUrl: null },
      ...(type === 'bigint' ? [{ ...base, id: 42 }] : []),
    ];
    for (const input of accepted) {
      t.true(served.safeParse(input).success, `${type}: the service accepts ${JSON.stringify(input)}`);
      t.true(documented(input), `${type}: the document accepts ${JSON.stringify(input)}: ${JSON.stringify(documented.errors)}`);
    }
    const refused = [
      { name: 'Acme' },
      { ...base, slug: 'Acme' },
      { ...base, slug: 'a'.repeat(64) },
      { ...base, name: 'x'.repeat(201) },
      { ...base, name: 7 },
      { ...base, domain: 'Acme.example.com' },
      { ...base, domain: 'acme.example.com:80' },
      { ...base, domain: 'a..example.com' },
      { ...base, plan: 'Gold Plan' },
      { ...base, metadata: [] },
      { ...base, databaseUrl: 5 },
      { ...base, status: 'active' },
      ...(type === 'text' ? [{ slug: 'acme', name: 'Acme' }] : []),
    ];
    for (const input of refused) {
      t.false(served.safeParse(input).success, `${type}: the service refuses ${JSON.stringify(input)}`);
      t.false(documented(input), `${type}: the document refuses ${JSON.stringify(input)}`);
    }
  }
});
