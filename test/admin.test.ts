import anyTest, { type TestFn } from 'ava';
import Koa from 'koa';
import request from 'supertest';
import {
  InvalidTenantIdError,
  OnboardingError,
  PgTenantService,
  TenantAdminService,
  TenantExistsError,
  TenantInputError,
  TenantNotFoundError,
  type Tenant,
} from '../src/index.js';
import { createAdminRouter } from '../src/koa/index.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA, type TestDatabase } from './helpers/db.js';

const test = anyTest as TestFn<{ db: TestDatabase; admin: TenantAdminService; server: ReturnType<Koa['callback']> }>;
const TOKEN = 'Bearer admin-secret';

test.before(async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  const admin = new TenantAdminService(db.adminPool, { tenancy: db.config });
  const app = new Koa();
  const router = createAdminRouter(admin, {
    authorize: async (ctx, next) => {
      if (ctx.get('authorization') !== TOKEN) ctx.throw(401, 'admin token required');
      await next();
    },
    maxBodyBytes: 2048,
  });
  app.use(router.routes()).use(router.allowedMethods());
  t.context = { db, admin, server: app.callback() };
});

test.after.always(async (t) => {
  await t.context.db?.drop();
});

let counter = 0;
const slug = (prefix: string) => `${prefix}-${++counter}`;
/** `{ a: { a: ... } }`, `levels` deep. */
const deep = (levels: number) => {
  let value: Record<string, unknown> = {};
  for (let i = 1; i < levels; i += 1) value = { a: value };
  return value;
};

test('create, read, change and delete a tenant; what the app role reads is what the admin wrote', async (t) => {
  const { admin, db } = t.context;
  const created = await admin.createTenant({ slug: slug('acme'), name: 'Acme', domain: 'acme.example.com', plan: 'pro', metadata: { seats: 10 } });
  t.like(created, { name: 'Acme', domain: 'acme.example.com', status: 'active', plan: 'pro', databaseUrl: null });
  t.deepEqual(created.metadata, { seats: 10 });
  const seen = await new PgTenantService(db.appPool, { tenancy: db.config }).getTenantById(created.id);
  t.is(seen?.slug, created.slug);
  const changed = await admin.updateTenant(created.id.toUpperCase(), { name: 'Acme Inc', domain: null, databaseUrl: db.appUrl });
  t.like(changed, { name: 'Acme Inc', domain: null, databaseUrl: db.appUrl });
  t.like(await admin.suspendTenant(created.id), { status: 'suspended' });
  t.like(await admin.activateTenant(created.id), { status: 'active' });
  t.like(await admin.deleteTenant(created.id), { status: 'deleted' });
  await t.throwsAsync(admin.activateTenant(created.id), { instanceOf: TenantInputError, message: /deleted/ });
  await t.throwsAsync(admin.updateTenant(created.id, { domain: 'reuse.example.com' }), { instanceOf: TenantInputError, message: /deleted/ });
  t.like(await admin.getTenant(created.id), { status: 'deleted' });
});

test('bad input is a TenantInputError naming the field; taken slugs and domains are TenantExistsError', async (t) => {
  const { admin } = t.context;
  const taken = await admin.createTenant({ slug: slug('taken'), name: 'Taken', domain: `${slug('d')}.example.com` });
  const cases: Array<[unknown, RegExp]> = [
    [{ slug: 'Bad Slug', name: 'x' }, /`slug`/],
    [{ slug: slug('ok'), name: '' }, /`name`/],
    [{ slug: slug('ok'), name: 'x'.repeat(201) }, /`name`/],
    [{ slug: slug('ok'), name: 'x', domain: 'Example.COM:80' }, /`domain`/],
    [{ slug: slug('ok'), name: 'x', plan: 'Gold Plan' }, /`plan`/],
    [{ slug: slug('ok'), name: 'x', metadata: [1, 2] }, /`metadata`/],
    [{ slug: slug('ok'), name: 'x', metadata: { blob: 'x'.repeat(17_000) } }, /16 KB/],
    [{ slug: slug('ok'), name: 'x', databaseUrl: 'mysql://x/y' }, /`databaseUrl`/],
    [{ slug: slug('ok'), name: 'x', domain: 'localhost' }, /`domain`.*not an IP address or localhost/],
    [{ slug: slug('ok'), name: 'x', domain: '127.0.0.1' }, /`domain`/],
    [{ slug: slug('ok'), name: 'x', domain: '10.1.2.3' }, /`domain`/],
    [{ slug: slug('ok'), name: 'x', domain: 'app.localhost' }, /`domain`/],
    [{ slug: slug('ok'), name: 'x', domain: 'intranet' }, /`domain`/],
    [{ slug: slug('ok'), name: 'x', domain: '0x7f.1' }, /`domain`/],
    [{ slug: slug('ok'), name: 'x', metadata: deep(5000) }, /nest deeper/],
    [{ slug: slug('ok'), name: 'x', status: 'active' }, /unknown field `status`/],
    [null, /object/],
  ];
  for (const [input, message] of cases) {
    await t.throwsAsync(admin.createTenant(input as never), { instanceOf: TenantInputError, message }, message.source);
  }
  await t.throwsAsync(admin.createTenant({ slug: taken.slug, name: 'Again' }), { instanceOf: TenantExistsError });
  await t.throwsAsync(admin.createTenant({ slug: slug('other'), name: 'Other', domain: taken.domain }), { instanceOf: TenantExistsError });
  await t.throwsAsync(admin.createTenant({ id: taken.id, slug: slug('same-id'), name: 'Same id' }), { instanceOf: TenantExistsError });
  await t.throwsAsync(admin.createTenant({ id: 'not-a-uuid', slug: slug('bad-id'), name: 'x' }), { instanceOf: InvalidTenantIdError });
  await t.throwsAsync(admin.updateTenant(taken.id, {}), { instanceOf: TenantInputError, message: /nothing to change/ });
  await t.throwsAsync(admin.updateTenant(taken.id, { id: newTenantId() } as never), { instanceOf: TenantInputError, message: /`id`/ });
  await t.throwsAsync(admin.getTenant(newTenantId()), { instanceOf: TenantNotFoundError });
  await t.throwsAsync(admin.suspendTenant(newTenantId()), { instanceOf: TenantNotFoundError });
  await t.throwsAsync(admin.getTenant('../../etc/passwd'), { instanceOf: InvalidTenantIdError });
});

test('a failing onCreate (the deprecated seed hook) removes the tenant again', async (t) => {
  const { db } = t.context;
  const name = slug('onboard');
  const admin = new TenantAdminService(db.adminPool, {
    tenancy: db.config,
    onCreate: async () => {
      throw new Error('provisioning failed');
    },
  });
  const error = await t.throwsAsync(admin.createTenant({ slug: name, name: 'Onboard' }), { instanceOf: OnboardingError, message: /at the seed step/ });
  t.is((error?.cause as Error).message, 'provisioning failed');
  t.is((await db.superQuery(`SELECT count(*)::int AS n FROM linkbay.tenants WHERE slug = $1`, [name])).rows[0].n, 0);
  // During onboarding the tenant exists but is provisioning: no request resolves it before it is ready.
  let during: string | undefined;
  const ok = new TenantAdminService(db.adminPool, {
    tenancy: db.config,
    onCreate: async (tenant) => {
      during = (await new PgTenantService(db.appPool, { tenancy: db.config }).getTenantById(tenant.id))?.status;
    },
  });
  const created = await ok.createTenant({ slug: name, name: 'Onboard' });
  t.is(during, 'provisioning');
  t.is(created.status, 'active');
});

test('listing pages through tenants in creation order and filters by status', async (t) => {
  const { admin } = t.context;
  const prefix = slug('page');
  const made: Tenant[] = [];
  for (let i = 0; i < 5; i += 1) made.push(await admin.createTenant({ slug: `${prefix}-${i}`, name: `P${i}` }));
  await admin.suspendTenant(made[1]!.id);
  const all: Tenant[] = [];
  let after: string | undefined;
  do {
    const page = await admin.listTenants({ limit: 2, after });
    t.true(page.tenants.length <= 2);
    all.push(...page.tenants);
    after = page.next;
  } while (after);
  const mine = all.filter((x) => x.slug.startsWith(`${prefix}-`)).map((x) => x.slug);
  t.deepEqual(mine, made.map((x) => x.slug));
  t.is(new Set(all.map((x) => x.id)).size, all.length, 'no tenant twice');
  const suspended = await admin.listTenants({ status: 'suspended', limit: 1000 });
  t.true(suspended.tenants.some((x) => x.id === made[1]!.id));
  t.true(suspended.tenants.every((x) => x.status === 'suspended'));
  await t.throwsAsync(admin.listTenants({ limit: 0 }), { instanceOf: TenantInputError });
  await t.throwsAsync(admin.listTenants({ status: 'gone' as never }), { instanceOf: TenantInputError });
});

test('the app role cannot change the registry, even through the service', async (t) => {
  const { db } = t.context;
  const asApp = new TenantAdminService(db.appPool, { tenancy: db.config });
  const error = await t.throwsAsync(asApp.createTenant({ slug: slug('sneaky'), name: 'Sneaky' }));
  t.is((error as { code?: string }).code, '42501');
});

test('the admin router: token required, problems for bad input, the whole lifecycle over HTTP', async (t) => {
  const { server } = t.context;
  const http = () => request(server);
  t.is((await http().get('/admin/tenants')).status, 401);
  const denied = await http().post('/admin/tenants').send({ slug: 'x', name: 'x' });
  t.is(denied.status, 401);
  t.is(denied.type, 'application/problem+json');
  const s = slug('http');
  const created = await http().post('/admin/tenants').set('authorization', TOKEN).send({ slug: s, name: 'Over HTTP' });
  t.is(created.status, 201);
  const id = created.body.id as string;
  t.is((await http().get(`/admin/tenants/${id}`).set('authorization', TOKEN)).body.slug, s);
  t.is((await http().post('/admin/tenants').set('authorization', TOKEN).send({ slug: s, name: 'dup' })).status, 409);
  const invalid = await http().post('/admin/tenants').set('authorization', TOKEN).send({ slug: 'NO', name: 'x' });
  t.is(invalid.status, 422);
  t.like(invalid.body, { code: 'LBMT_TENANT_INPUT_INVALID' });
  t.regex(invalid.body.detail, /`slug`/);
  t.is((await http().post('/admin/tenants').set('authorization', TOKEN).set('content-type', 'text/plain').send('slug=x')).status, 415);
  t.is((await http().post('/admin/tenants').set('authorization', TOKEN).set('content-type', 'application/json').send('{"slug":')).status, 422);
  t.is((await http().post('/admin/tenants').set('authorization', TOKEN).send({ slug: 'big', name: 'x'.repeat(4000) })).status, 413);
  t.is((await http().get(`/admin/tenants/${newTenantId()}`).set('authorization', TOKEN)).status, 404);
  t.is((await http().get('/admin/tenants/not-an-id').set('authorization', TOKEN)).status, 400);
  t.is((await http().get('/admin/tenants?limit=abc').set('authorization', TOKEN)).status, 422);
  t.like((await http().patch(`/admin/tenants/${id}`).set('authorization', TOKEN).send({ name: 'Renamed' })).body, { name: 'Renamed' });
  // The app role's URL, its password once in the authority and once as ?password= (pg honours both).
  const appUrl = new URL(t.context.db.appUrl);
  const password = appUrl.password;
  const withUrl = await http().patch(`/admin/tenants/${id}`).set('authorization', TOKEN).send({ databaseUrl: appUrl.toString() });
  t.is(withUrl.status, 200);
  t.is(new URL(withUrl.body.databaseUrl).password, '***', 'the password is never sent');
  const asParameter = new URL(appUrl);
  asParameter.password = '';
  asParameter.searchParams.set('password', password);
  const other = await http().post('/admin/tenants').set('authorization', TOKEN).send({ slug: slug('param'), name: 'P', databaseUrl: asParameter.toString() });
  t.is(other.status, 201);
  t.is(new URL(other.body.databaseUrl).searchParams.get('password'), '***');
  t.false(JSON.stringify((await http().get(`/admin/tenants?limit=1000`).set('authorization', TOKEN)).body).includes(password));
  t.is((await http().post('/admin/tenants').set('authorization', TOKEN).send({ slug: slug('nul'), name: 'a\u0000b' })).status, 422);
  t.is((await http().post('/admin/tenants').set('authorization', TOKEN).send({ slug: slug('nul'), name: 'ok', metadata: { x: 'a\u0000b' } })).status, 422);
  t.like((await http().post(`/admin/tenants/${id}/suspend`).set('authorization', TOKEN)).body, { status: 'suspended' });
  t.like((await http().post(`/admin/tenants/${id}/activate`).set('authorization', TOKEN)).body, { status: 'active' });
  t.is((await http().delete(`/admin/tenants/${id}`).set('authorization', TOKEN)).status, 204);
  const listed = await http().get('/admin/tenants?status=deleted&limit=1000').set('authorization', TOKEN);
  t.true((listed.body.tenants as Tenant[]).some((x) => x.id === id));
  t.throws(() => createAdminRouter(t.context.admin, {} as never), { instanceOf: TypeError });
});

test('a database URL is checked when it is written: unreachable, superuser, BYPASSRLS or able to become one are refused', async (t) => {
  const { admin, db } = t.context;
  const superAsApp = new URL(db.superUrl);
  superAsApp.searchParams.set('options', `-c role=${db.config.roles.app}`);
  const cases: Array<[string, RegExp]> = [
    [db.superUrl, /bypasses row level security/],
    [db.adminUrl, /bypasses row level security/],
    // current_user is the app role, but the login role is the superuser: one RESET ROLE away.
    [superAsApp.toString(), /bypasses row level security/],
    ['postgres://nobody@127.0.0.1:1/none', /cannot connect/],
  ];
  for (const [url, message] of cases) {
    await t.throwsAsync(admin.createTenant({ slug: slug('url'), name: 'U', databaseUrl: url }), { instanceOf: TenantInputError, message }, message.source);
  }
  // A role that may SET ROLE to a BYPASSRLS role.
  const climber = `${db.config.roles.app}_climber`;
  await db.superQuery(`CREATE ROLE ${climber} LOGIN PASSWORD 'climb' IN ROLE ${db.config.roles.admin}`);
  t.teardown(() => db.superQuery(`DROP ROLE IF EXISTS ${climber}`).then(() => undefined));
  const climberUrl = new URL(db.appUrl);
  climberUrl.username = climber;
  climberUrl.password = 'climb';
  await t.throwsAsync(admin.createTenant({ slug: slug('url'), name: 'U', databaseUrl: climberUrl.toString() }), { message: new RegExp(db.config.roles.admin) });
  const ok = await admin.createTenant({ slug: slug('url'), name: 'U', databaseUrl: db.appUrl });
  await t.throwsAsync(admin.updateTenant(ok.id, { databaseUrl: db.superUrl }), { instanceOf: TenantInputError });
  t.is((await admin.getTenant(ok.id)).databaseUrl, db.appUrl, 'nothing was written');
  const unchecked = new TenantAdminService(db.adminPool, { tenancy: db.config, verifyDatabaseUrl: false });
  t.is((await unchecked.createTenant({ slug: slug('url'), name: 'U', databaseUrl: 'postgres://later@db.invalid/t' })).databaseUrl, 'postgres://later@db.invalid/t');
});
