/**
 * Onboarding as ordered steps: registry row (provisioning) → database → migrations → seed → health
 * check through the tenant's own pool → active. A failure at any step leaves no registry row,
 * database or role behind (checked as the superuser in pg_database, pg_roles, linkbay.tenants),
 * names the step, and is audited; a provisioning tenant's requests are refused.
 */
import anyTest, { type TestFn } from 'ava';
import { randomBytes } from 'node:crypto';
import Koa from 'koa';
import request from 'supertest';
import pg from 'pg';
import {
  createMultitenant,
  generateRlsSql,
  migrateFiles,
  OnboardingError,
  PgTenantService,
  TenantAdminService,
  TenantDBPool,
  tenantQuery,
  type MigrationFile,
  type OnboardingOptions,
  type Tenant,
} from '../src/index.js';
import { createAdminRouter, createTenantRouter, multitenant, problemDetails } from '../src/koa/index.js';
import { createTestDatabase, ORDERS_SCHEMA, serverUrl, withUrl, type TestDatabase } from './helpers/db.js';
import { until } from './helpers/until.js';

const test = anyTest as TestFn<{ db: TestDatabase; pools: TenantDBPool; files: MigrationFile[]; root: pg.Client }>;

test.before(async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  const pools = new TenantDBPool({ tenantService: new PgTenantService(db.appPool, { tenancy: db.config }), sharedPool: db.appPool, tenancy: db.config });
  // What a tenant database is migrated with: its table, then the generated roles, registry and RLS.
  const files = [{ name: '00001-orders.sql', sql: ORDERS_SCHEMA }, ...generateRlsSql(db.config, { startIndex: 2 })];
  const root = new pg.Client({ connectionString: serverUrl() });
  await root.connect();
  t.context = { db, pools, files, root };
});

test.after.always(async (t) => {
  await t.context.pools?.closeAll();
  await t.context.root?.end();
  await t.context.db?.drop();
});

let counter = 0;
/** A tenant database name and a role name no other test uses. */
function names(db: TestDatabase) {
  counter += 1;
  const suffix = `${counter}_${randomBytes(3).toString('hex')}`;
  return { database: `${db.name}_t${suffix}`, role: `${db.name}_r${suffix}`, slug: `tenant-${counter}-${randomBytes(2).toString('hex')}` };
}

/** What the superuser sees of a tenant's traces. */
async function traces(t: { context: { root: pg.Client; db: TestDatabase } }, n: { database: string; role: string; slug: string }) {
  const { root, db } = t.context;
  const database = (await root.query('SELECT count(*)::int AS n FROM pg_database WHERE datname = $1', [n.database])).rows[0].n as number;
  const role = (await root.query('SELECT count(*)::int AS n FROM pg_roles WHERE rolname = $1', [n.role])).rows[0].n as number;
  const registry = (await db.superQuery('SELECT count(*)::int AS n FROM linkbay.tenants WHERE slug = $1', [n.slug])).rows[0].n as number;
  return { database, role, registry };
}

/** Onboarding of a tenant with its own database; the migrations also create a role of its own. */
function ownDatabase(t: { context: { db: TestDatabase; pools: TenantDBPool; files: MigrationFile[] } }, n: { role: string }, extra: Partial<OnboardingOptions> = {}): OnboardingOptions {
  const { pools, files } = t.context;
  return {
    database: { adminUrl: serverUrl() },
    migrations: { files: [...files, { name: `${String(files.length + 1).padStart(5, "0")}-reporting-role.sql`, sql: `CREATE ROLE "${n.role}" NOLOGIN;` }] },
    roles: [n.role],
    pools,
    ...extra,
  };
}

async function failedStep(t: any, admin: TenantAdminService, input: { slug: string; databaseUrl?: string }) {
  const error = await t.throwsAsync(admin.createTenant({ name: 'Doomed', ...input }), { instanceOf: OnboardingError });
  return error as OnboardingError;
}

test('a tenant with its own database: created, migrated, seeded, checked through its own pool, then active and audited', async (t) => {
  const { db, pools, root } = t.context;
  const n = names(db);
  const databaseUrl = withUrl(db.appUrl, { database: n.database });
  t.teardown(async () => {
    await pools.closeDatabasePool(databaseUrl);
    await root.query(`DROP DATABASE IF EXISTS ${n.database} WITH (FORCE)`);
    await root.query(`DROP ROLE IF EXISTS "${n.role}"`);
  });
  const seen: string[] = [];
  const admin = new TenantAdminService(db.adminPool, {
    tenancy: db.config,
    onboarding: ownDatabase(t, n, {
      seed: async ({ tenant, withTenantTransaction }) => {
        seen.push((await db.superQuery('SELECT status FROM linkbay.tenants WHERE id = $1', [tenant.id])).rows[0].status);
        await withTenantTransaction((tx) => tx.query(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'welcome kit')`, [tenant.id]));
      },
      healthCheck: async (tx) => {
        const { rows } = await tx.query('SELECT current_user AS role, count(*)::int AS n FROM orders');
        seen.push(`${rows[0].role}:${rows[0].n}`);
      },
    }),
  });
  const tenant = await admin.createTenant({ slug: n.slug, name: 'Own', databaseUrl }, { actor: 'ops:jane', reason: 'new customer' });
  t.is(tenant.status, 'active');
  t.deepEqual(seen, ['provisioning', `${db.config.roles.app}:1`], 'seeded while provisioning; the health check ran as the app role and saw the seed');
  t.deepEqual(await traces(t, n), { database: 1, role: 1, registry: 1 });
  const rows = await pools.tenantQuery(tenant.id, 'SELECT item FROM orders');
  t.deepEqual(rows.rows, [{ item: 'welcome kit' }]);
  const audit = await db.superQuery(`SELECT actor, action, reason, after->>'status' AS status, after->>'databaseUrl' AS url FROM linkbay.audit_log WHERE subject_tenant = $1 ORDER BY id`, [tenant.id]);
  t.deepEqual(
    audit.rows.map((r) => [r.actor, r.action, r.reason, r.status]),
    [
      ['ops:jane', 'create', 'new customer', 'provisioning'],
      ['ops:jane', 'onboarded', 'new customer', 'active'],
    ],
  );
  t.false(audit.rows.some((r) => String(r.url).includes('lbmt-test')), 'no password in the audit log');
});

test('a seed hook that throws: the database, the role and the registry row are gone; the error names the step', async (t) => {
  const { db } = t.context;
  const n = names(db);
  const admin = new TenantAdminService(db.adminPool, {
    tenancy: db.config,
    onboarding: ownDatabase(t, n, {
      seed: async () => {
        throw new Error('seed data missing');
      },
    }),
  });
  const error = await failedStep(t, admin, { slug: n.slug, databaseUrl: withUrl(db.appUrl, { database: n.database }) });
  t.is(error.step, 'seed');
  t.is(error.code, 'LBMT_ONBOARDING_FAILED');
  t.is((error.cause as Error).message, 'seed data missing');
  t.deepEqual(error.undoFailures, []);
  t.deepEqual(await traces(t, n), { database: 0, role: 0, registry: 0 });
  const audit = await db.superQuery(`SELECT action, after FROM linkbay.audit_log WHERE before->>'slug' = $1 OR after->>'slug' = $1 ORDER BY id`, [n.slug]);
  t.deepEqual(audit.rows.map((r) => r.action), ['create', 'onboarding-failed']);
  const failed = await db.superQuery(`SELECT after FROM linkbay.audit_log WHERE action = 'onboarding-failed' AND before->>'slug' = $1`, [n.slug]);
  t.like(failed.rows[0].after, { step: 'seed' });
});

test('a health check that fails: everything undone, step health-check', async (t) => {
  const { db } = t.context;
  const n = names(db);
  const admin = new TenantAdminService(db.adminPool, {
    tenancy: db.config,
    onboarding: ownDatabase(t, n, {
      healthCheck: async (tx) => {
        const { rows } = await tx.query('SELECT count(*)::int AS n FROM orders');
        if (rows[0].n === 0) throw new Error('no welcome kit');
      },
    }),
  });
  const error = await failedStep(t, admin, { slug: n.slug, databaseUrl: withUrl(db.appUrl, { database: n.database }) });
  t.is(error.step, 'health-check');
  t.is(error.status, 500, 'a hook failed: not an upstream database');
  t.deepEqual(await traces(t, n), { database: 0, role: 0, registry: 0 });
});

test('the health check runs as the app role through the tenant pool: a database URL of a BYPASSRLS role fails it', async (t) => {
  const { db } = t.context;
  const n = names(db);
  const admin = new TenantAdminService(db.adminPool, { tenancy: db.config, onboarding: ownDatabase(t, n) });
  // The admin role bypasses RLS: TenantDBPool refuses its pool before the first transaction.
  const error = await failedStep(t, admin, { slug: n.slug, databaseUrl: withUrl(db.adminUrl, { database: n.database }) });
  t.is(error.step, 'health-check');
  t.regex(error.message, /health-check step/);
  t.deepEqual(await traces(t, n), { database: 0, role: 0, registry: 0 });
});

test('migrations that fail: the database and the role they created are gone, step migrations (502)', async (t) => {
  const { db, files } = t.context;
  const n = names(db);
  const admin = new TenantAdminService(db.adminPool, {
    tenancy: db.config,
    onboarding: ownDatabase(t, n, {
      migrations: {
        files: [{ name: '00001-reporting-role.sql', sql: `CREATE ROLE "${n.role}" NOLOGIN;` }, ...files.map((f, i) => ({ ...f, name: f.name.replace(/^\d+/, String(i + 2).padStart(5, '0')) })), { name: '00099-broken.sql', sql: 'SELECT * FROM no_such_table;' }],
      },
    }),
  });
  const error = await failedStep(t, admin, { slug: n.slug, databaseUrl: withUrl(db.appUrl, { database: n.database }) });
  t.is(error.step, 'migrations');
  t.is(error.status, 502);
  t.regex(error.message, /SQLSTATE 42P01/);
  t.deepEqual(await traces(t, n), { database: 0, role: 0, registry: 0 });
});

test('a database that cannot be created: nothing left, step database; an existing database is refused and kept', async (t) => {
  const { db, root } = t.context;
  const n = names(db);
  const admin = new TenantAdminService(db.adminPool, { tenancy: db.config, onboarding: ownDatabase(t, n, { database: { adminUrl: serverUrl(), template: `${n.database}_no_such_template` } }) });
  const error = await failedStep(t, admin, { slug: n.slug, databaseUrl: withUrl(db.appUrl, { database: n.database }) });
  t.is(error.step, 'database');
  t.is(error.status, 502);
  t.deepEqual(await traces(t, n), { database: 0, role: 0, registry: 0 });

  // A database that is there already was not made by this onboarding: refused, and not dropped by the undo.
  await root.query(`CREATE DATABASE ${n.database}`);
  t.teardown(() => root.query(`DROP DATABASE IF EXISTS ${n.database} WITH (FORCE)`));
  const again = new TenantAdminService(db.adminPool, { tenancy: db.config, onboarding: ownDatabase(t, n) });
  const exists = await failedStep(t, again, { slug: n.slug, databaseUrl: withUrl(db.appUrl, { database: n.database }) });
  t.is(exists.step, 'database');
  t.deepEqual(await traces(t, n), { database: 1, role: 0, registry: 0 });
});

test('a databaseUrl on another server than adminUrl is refused (422) before any connection: the provisioning credentials go nowhere else', async (t) => {
  const { db } = t.context;
  const n = names(db);
  const admin = new TenantAdminService(db.adminPool, { tenancy: db.config, onboarding: ownDatabase(t, n) });
  const elsewhere = new URL(withUrl(db.appUrl, { database: n.database }));
  elsewhere.hostname = '127.0.0.2';
  elsewhere.port = '1';
  const error = await failedStep(t, admin, { slug: n.slug, databaseUrl: elsewhere.toString() });
  t.is(error.step, 'database');
  t.is(error.status, 422);
  t.regex(error.message, /server onboarding provisions on/);
  t.deepEqual(await traces(t, n), { database: 0, role: 0, registry: 0 });
});

test('a tenant of the shared database: its seeded rows are purged when a later step fails', async (t) => {
  const { db, pools } = t.context;
  const n = names(db);
  let seeded: Tenant | undefined;
  const admin = new TenantAdminService(db.adminPool, {
    tenancy: db.config,
    onboarding: {
      pools,
      seed: async ({ tenant, withTenantTransaction }) => {
        seeded = tenant;
        await withTenantTransaction((tx) => tx.query(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'a'), ($1, 'b')`, [tenant.id]));
      },
      healthCheck: () => {
        throw new Error('not today');
      },
    },
  });
  const error = await failedStep(t, admin, { slug: n.slug });
  t.is(error.step, 'health-check');
  t.truthy(seeded);
  t.is((await db.superQuery('SELECT count(*)::int AS n FROM orders WHERE tenant_id = $1', [seeded!.id])).rows[0].n, 0);
  t.deepEqual(await traces(t, n), { database: 0, role: 0, registry: 0 });
});

test("a provisioning tenant's requests are refused like a suspended one's, then served once it is active", async (t) => {
  const { db, pools } = t.context;
  const n = names(db);
  const core = createMultitenant({ tenantService: new PgTenantService(db.appPool, { tenancy: db.config }), tenancy: db.config, cache: false });
  const app = new Koa();
  app.use(problemDetails());
  app.use(multitenant({ core }));
  const routes = createTenantRouter();
  routes.get('/orders', async (ctx) => {
    ctx.body = (await tenantQuery(db.appPool, undefined, 'SELECT item FROM orders', [], { tenancy: db.config })).rows;
  });
  app.use(routes.routes());
  const server = app.callback();
  const during: Array<{ status: number; code?: string }> = [];
  const admin = new TenantAdminService(db.adminPool, {
    tenancy: db.config,
    onboarding: {
      pools,
      seed: async ({ tenant, withTenantTransaction }) => {
        await withTenantTransaction((tx) => tx.query(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'seeded')`, [tenant.id]));
        const response = await request(server).get('/orders').set('X-Tenant-ID', tenant.id);
        during.push({ status: response.status, code: response.body.code });
        // Nor can it be activated or changed by hand meanwhile.
        const other = new TenantAdminService(db.adminPool, { tenancy: db.config });
        await t.throwsAsync(other.activateTenant(tenant.id), { message: /provisioning/ });
        await t.throwsAsync(other.updateTenant(tenant.id, { name: 'Early' }), { message: /provisioning/ });
        t.is((await pools.withTenantTransaction(tenant.id, () => 1).catch((e: Error) => e.name)), 'TenantSuspendedError', 'TenantDBPool refuses it too');
      },
    },
  });
  const tenant = await admin.createTenant({ slug: n.slug, name: 'Later' });
  t.deepEqual(during, [{ status: 403, code: 'LBMT_TENANT_SUSPENDED' }]);
  const after = await request(server).get('/orders').set('X-Tenant-ID', tenant.id);
  t.is(after.status, 200);
  t.deepEqual(after.body, [{ item: 'seeded' }]);
  t.true((await admin.listTenants({ status: 'provisioning', limit: 1000 })).tenants.every((x) => x.status === 'provisioning'));
});

test('from a template: the database is a copy of a migrated one, and the migrations find nothing left to apply', async (t) => {
  const { db, pools, root, files } = t.context;
  const n = names(db);
  const template = `${n.database}_tpl`;
  await root.query(`CREATE DATABASE ${template}`);
  const databaseUrl = withUrl(db.appUrl, { database: n.database });
  t.teardown(async () => {
    await pools.closeDatabasePool(databaseUrl);
    for (const name of [n.database, template]) await root.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  });
  await migrateFiles({ databaseUrl: withUrl(serverUrl(), { database: template }), files });
  const admin = new TenantAdminService(db.adminPool, { tenancy: db.config, onboarding: { database: { adminUrl: serverUrl(), template }, migrations: { files }, pools } });
  const tenant = await admin.createTenant({ slug: n.slug, name: 'Templated', databaseUrl });
  t.is(tenant.status, 'active');
  const copy = new pg.Client({ connectionString: withUrl(serverUrl(), { database: n.database }) });
  await copy.connect();
  t.teardown(() => copy.end());
  const applied = await copy.query('SELECT count(*)::int AS n FROM atdatabases_migrations_applied');
  t.is(applied.rows[0].n, files.length, 'the template brought every migration; none was applied twice');
  t.deepEqual((await pools.tenantQuery(tenant.id, 'SELECT count(*)::int AS n FROM orders')).rows, [{ n: 0 }]);
});

// Serial: the other tests' onboardings take their turns in `postgres` too (their adminUrl's database).
test.serial('onboardings into existing databases take turns in the server-wide lockDatabase (postgres), not in each tenant database', async (t) => {
  const { db, pools, root, files } = t.context;
  const n = names(db);
  await root.query(`CREATE DATABASE ${n.database}`);
  const databaseUrl = withUrl(db.appUrl, { database: n.database });
  t.teardown(async () => {
    await pools.closeDatabasePool(databaseUrl);
    await root.query(`DROP DATABASE IF EXISTS ${n.database} WITH (FORCE)`);
  });
  // Another onboarding of this server, into another database, holds the turn: in `postgres`.
  const other = new pg.Client({ connectionString: withUrl(serverUrl(), { database: 'postgres' }) });
  await other.connect();
  t.teardown(() => other.end());
  await other.query('SELECT pg_advisory_lock($1::bigint)', [BigInt('0x6c626d746f6e6264').toString()]);
  const migrationUrl = (url: string) => withUrl(serverUrl(), { database: decodeURIComponent(new URL(url).pathname.slice(1)) });
  const admin = new TenantAdminService(db.adminPool, { tenancy: db.config, onboarding: { migrations: { files }, migrationUrl, pools } });
  const creating = admin.createTenant({ slug: n.slug, name: 'Waits its turn', databaseUrl });
  creating.catch(() => undefined);
  const waiting = "SELECT count(*)::int AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = 'postgres'";
  await until(async () => (await root.query(waiting)).rows[0].n === 1, 10_000, 'the onboarding to wait for the lock in postgres');
  t.deepEqual((await db.superQuery('SELECT status FROM linkbay.tenants WHERE slug = $1', [n.slug])).rows, [{ status: 'provisioning' }]);
  const migrated = new pg.Client({ connectionString: withUrl(serverUrl(), { database: n.database }) });
  await migrated.connect();
  t.teardown(() => migrated.end());
  t.is((await migrated.query("SELECT to_regclass('atdatabases_migrations_applied') AS t")).rows[0].t, null, 'nothing migrated while another onboarding has the turn');
  await other.query('SELECT pg_advisory_unlock_all()');
  t.is((await creating).status, 'active');
  t.truthy((await migrated.query("SELECT to_regclass('atdatabases_migrations_applied') AS t")).rows[0].t, 'migrated once it had the turn');
});

test('lockDatabase must be a database name', (t) => {
  const { db } = t.context;
  t.throws(() => new TenantAdminService(db.adminPool, { tenancy: db.config, onboarding: { lockDatabase: 'x"; DROP', seed: () => undefined } }), { message: /lockDatabase/ });
});

test('over HTTP a failed onboarding is a problem naming the step: 500 for a hook, 502 for a database that refused', async (t) => {
  const { db } = t.context;
  const n = names(db);
  const post = (onboarding: OnboardingOptions) => {
    const app = new Koa();
    const router = createAdminRouter(new TenantAdminService(db.adminPool, { tenancy: db.config, onboarding }), { authorize: async (_ctx, next) => next() });
    app.use(router.routes());
    return request(app.callback()).post('/admin/tenants').send({ slug: n.slug, name: 'Doomed', databaseUrl: withUrl(db.appUrl, { database: n.database }) });
  };
  const hook = await post(
    ownDatabase(t, n, {
      seed: () => {
        throw new Error('internal detail that must not leak');
      },
    }),
  );
  t.is(hook.status, 500);
  t.regex(String(hook.headers['content-type']), /application\/problem\+json/);
  t.like(hook.body, { code: 'LBMT_ONBOARDING_FAILED' });
  t.regex(hook.body.detail, /seed step/);
  t.notRegex(JSON.stringify(hook.body), /internal detail/);
  const refused = await post(ownDatabase(t, n, { database: { adminUrl: serverUrl(), template: `${n.database}_missing_template` } }));
  t.is(refused.status, 502);
  t.like(refused.body, { code: 'LBMT_ONBOARDING_FAILED', title: 'Bad Gateway' });
  t.regex(refused.body.detail, /database step \(SQLSTATE 3D000\)/);
  t.deepEqual(await traces(t, n), { database: 0, role: 0, registry: 0 });
});
