/**
 * An adversarial pass over the tenant lifecycle: hostile input that must be refused (never silently
 * changed), kills of the admin connection in the middle of a purge and of an onboarding, races of
 * lifecycle actions, and the audit log's account of each (who, what, why, outcome), checked as the
 * superuser against what the registry and the tables hold afterwards.
 */
import anyTest, { type TestFn } from 'ava';
import type { AddressInfo } from 'node:net';
import { request as httpRequest, type Server } from 'node:http';
import Koa from 'koa';
import pg from 'pg';
import request from 'supertest';
import { OnboardingError, PgTenantService, PurgeBlockedError, type AuditEntry, TenantAdminService, TenantDBPool, TenantExistsError, TenantInputError, TenantMigrationService, withTenantTransaction } from '../src/index.js';
import { createAdminRouter, createMigrationRouter, requireBearerToken } from '../src/koa/index.js';
import { createTestDatabase, ORDERS_SCHEMA, serverUrl, withUrl, type TestDatabase } from './helpers/db.js';
import { waitFor } from './helpers/wait.js';
import { until } from './helpers/until.js';

const test = anyTest as TestFn<{ db: TestDatabase; admin: TenantAdminService; server: Server; port: number }>;
const token = 'lifecycle-attack-admin-token';

test.before(async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  const admin = new TenantAdminService(db.adminPool, { tenancy: db.config });
  const app = new Koa();
  const router = createAdminRouter(admin, { authorize: requireBearerToken({ token: [{ token, actor: 'ops:jane' }], maxFailures: 100_000 }) });
  app.use(router.routes()).use(router.allowedMethods());
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  t.context = { db, admin, server, port: (server.address() as AddressInfo).port };
});

test.after.always(async (t) => {
  t.context.server?.close();
  await t.context.db?.drop();
});

/** A raw request: path and header bytes go on the wire exactly as given. */
function raw(t: { context: { port: number } }, method: string, path: string, headers: Record<string, string> = {}, body?: string) {
  return new Promise<{ status: number; body: string; headers: Record<string, unknown> }>((resolve, reject) => {
    const request = httpRequest(
      { host: '127.0.0.1', port: t.context.port, method, path, headers: { ...(body ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) } : {}), ...headers } },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body: text, headers: response.headers }));
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}

const auth = { authorization: `Bearer ${token}` };
let counter = 0;
const slug = (base: string) => `${base}-${(counter += 1)}`;

async function auditOf(db: TestDatabase, tenantId: string) {
  const { rows } = await db.superQuery(`SELECT actor, action, reason, before, after FROM linkbay.audit_log WHERE subject_tenant = $1 ORDER BY id`, [tenantId]);
  return rows as Array<{ actor: string; action: string; reason: string | null; before: any; after: any }>;
}

test('HEAD, OPTIONS and wrong methods of every admin route, purge, audit and openapi.json included, answer nothing without the token, not even the route\'s methods', async (t) => {
  const { db, admin } = t.context;
  const victim = await admin.createTenant({ slug: slug('spelled'), name: 'Victim Inc' });
  const paths = ['/admin/tenants', `/admin/tenants/${victim.id}`, `/admin/tenants/${victim.id}/purge`, `/admin/tenants/${victim.id}/suspend`, '/admin/audit', '/admin/openapi.json'];
  for (const path of paths) {
    for (const spelling of [path, path.toUpperCase(), `${path}/`, `/${path}`, path.replace('/admin', '/%61dmin')]) {
      for (const method of ['HEAD', 'OPTIONS', 'GET', 'POST', 'PUT', 'DELETE', 'PATCH']) {
        const response = await raw(t, method, spelling, { authorization: 'Bearer not-the-token-but-long' });
        // allowedMethods() would answer OPTIONS (200) and a wrong method (405) with the route's
        // methods in `Allow`: the map of the admin API, told to anyone.
        t.true([401, 403, 404].includes(response.status), `${method} ${spelling} answered ${response.status} (Allow: ${String(response.headers.allow)})`);
        t.is(response.headers.allow, undefined, `${method} ${spelling} told its methods`);
        t.false(/Victim|openapi|"slug"/.test(response.body), `${method} ${spelling} leaked ${response.body.slice(0, 80)}`);
      }
    }
  }
  t.is((await db.superQuery(`SELECT status FROM linkbay.tenants WHERE id = $1`, [victim.id])).rows[0].status, 'active');
  t.is((await auditOf(db, victim.id)).length, 1, 'only the create');
  // With the token, allowedMethods() answers as usual.
  const options = await raw(t, 'OPTIONS', `/admin/tenants/${victim.id}/purge`, auth);
  t.is(options.status, 200);
  t.is(options.headers.allow, 'POST');
  t.is((await raw(t, 'PUT', '/admin/tenants', auth)).status, 405);
});

test('the X-Audit-Reason of a request is recorded as sent: UTF-8 text is not read as latin1', async (t) => {
  const { db, admin } = t.context;
  const tenant = await admin.createTenant({ slug: slug('reason'), name: 'Reason' });
  const reason = 'Kündigung – ticket №4711';
  // What curl -H or any client sends for non-ASCII text: its UTF-8 bytes.
  const wire = Buffer.from(reason, 'utf8').toString('latin1');
  const response = await raw(t, 'POST', `/admin/tenants/${tenant.id}/suspend`, { ...auth, 'x-audit-reason': wire });
  t.is(response.status, 200);
  const rows = await auditOf(db, tenant.id);
  t.is(rows.at(-1)!.action, 'suspend');
  t.is(rows.at(-1)!.reason, reason);
});

test('metadata numbers JSON cannot carry (1e400 parses to Infinity) are refused, not stored as null', async (t) => {
  const { db } = t.context;
  const s = slug('number');
  const response = await raw(t, 'POST', '/admin/tenants', auth, `{"slug":"${s}","name":"N","metadata":{"seats":1e400}}`);
  t.is(response.status, 422, response.body);
  t.regex(response.body, /metadata/);
  t.is((await db.superQuery(`SELECT count(*)::int AS n FROM linkbay.tenants WHERE slug = $1`, [s])).rows[0].n, 0);
});

test('a name with a lone surrogate is refused, not stored as U+FFFD', async (t) => {
  const { db, admin } = t.context;
  const s = slug('surrogate');
  const response = await raw(t, 'POST', '/admin/tenants', auth, `{"slug":"${s}","name":"Acme \\ud800"}`);
  t.is(response.status, 422, response.body);
  t.regex(response.body, /name/);
  t.is((await db.superQuery(`SELECT count(*)::int AS n FROM linkbay.tenants WHERE slug = $1`, [s])).rows[0].n, 0);
  await t.throwsAsync(admin.createTenant({ slug: slug('surrogate'), name: 'Acme' }, { reason: 'why \udc00' }), { instanceOf: TenantInputError, message: /reason/ });
});

test('ids in other spellings reach the one tenant, and its audit rows name its canonical id', async (t) => {
  const { db, admin } = t.context;
  const tenant = await admin.createTenant({ slug: slug('spelling'), name: 'Spelling' });
  const braced = encodeURIComponent(`{${tenant.id.toUpperCase()}}`);
  t.is((await raw(t, 'POST', `/admin/tenants/${braced}/suspend`, auth)).status, 200);
  t.is((await raw(t, 'POST', `/admin/tenants/${tenant.id.replaceAll('-', '')}/activate`, auth)).status, 200);
  t.is((await raw(t, 'POST', `/admin/tenants/%20${tenant.id}/suspend`, auth)).status, 400, 'whitespace is not trimmed into an id');
  t.deepEqual((await auditOf(db, tenant.id)).map((r) => [r.action, r.actor]), [['create', 'system'], ['suspend', 'ops:jane'], ['activate', 'ops:jane']]);
  const body = JSON.parse((await raw(t, 'GET', `/admin/audit?tenant=${encodeURIComponent(tenant.id.toUpperCase())}`, auth)).body);
  t.is(body.entries.length, 3);
});

test('hostile bodies: prototype keys, wrong types, case and unicode variants of a slug; nothing is created or changed', async (t) => {
  const { db, admin } = t.context;
  const tenant = await admin.createTenant({ slug: slug('hostile'), name: 'Hostile', metadata: { kept: true } });
  const bodies = [
    `{"slug":"${tenant.slug}x","name":"x","__proto__":{"status":"active"}}`,
    `{"slug":"${tenant.slug}x","name":"x","constructor":{"prototype":{"x":1}}}`,
    `{"slug":"${tenant.slug.toUpperCase()}","name":"x"}`,
    `{"slug":"${tenant.slug.replace('h', '\u0127')}","name":"x"}`,
    `{"slug":"${tenant.slug}\u200b","name":"x"}`,
    `{"slug":["${tenant.slug}"],"name":"x"}`,
    `{"slug":"${tenant.slug}y","name":{"toString":"x"}}`,
    `{"slug":"${tenant.slug}z","name":"x","status":"active"}`,
    `{"slug":"${tenant.slug}z","name":"x","id":" ${crypto.randomUUID()}"}`,
  ];
  for (const body of bodies) {
    const response = await raw(t, 'POST', '/admin/tenants', auth, body);
    t.true([400, 409, 422].includes(response.status), `${body} answered ${response.status} ${response.body}`);
  }
  for (const body of [`{"metadata":{"__proto__":{"x":1}}}`, `{"status":"deleted"}`, `{"id":"${crypto.randomUUID()}"}`, `{"slug":null}`, `{}`]) {
    const response = await raw(t, 'PATCH', `/admin/tenants/${tenant.id}`, auth, body);
    t.true([400, 422].includes(response.status), `${body} answered ${response.status} ${response.body}`);
  }
  const { rows } = await db.superQuery(`SELECT slug, status, metadata FROM linkbay.tenants WHERE slug LIKE $1 || '%'`, [tenant.slug.slice(0, 7)]);
  t.deepEqual(rows, [{ slug: tenant.slug, status: 'active', metadata: { kept: true } }]);
  t.is((await auditOf(db, tenant.id)).length, 1);
});

test('two purges of one tenant at once: both complete, the second deleted nothing, and the audit says just that', async (t) => {
  const { db, admin } = t.context;
  const tenant = await admin.createTenant({ slug: slug('twice'), name: 'Twice' });
  await db.superQuery(`INSERT INTO orders (tenant_id, item) SELECT $1, 'x' FROM generate_series(1, 5)`, [tenant.id]);
  await admin.deleteTenant(tenant.id);
  const [a, b] = await Promise.all([admin.purgeTenant(tenant.id, { actor: 'ops:a' }), admin.purgeTenant(tenant.id, { actor: 'ops:b' })]);
  t.true(a.complete && b.complete);
  t.deepEqual([a.tables[0]!.deleted, b.tables[0]!.deleted].sort(), [0, 5]);
  const purges = (await auditOf(db, tenant.id)).filter((r) => r.action === 'purge');
  t.deepEqual(purges.map((r) => r.after.tables.find((x: any) => x.table === 'public.orders').deleted).sort(), [0, 5]);
});

test('createTenant of an id being purged is refused (409) and the purge still completes', async (t) => {
  const { admin } = t.context;
  const tenant = await admin.createTenant({ slug: slug('reuse'), name: 'Reuse' });
  await admin.deleteTenant(tenant.id);
  const [purged, created] = await Promise.allSettled([admin.purgeTenant(tenant.id), admin.createTenant({ id: tenant.id, slug: slug('reuse'), name: 'Again' })]);
  t.is(purged.status, 'fulfilled');
  t.true(created.status === 'rejected' && created.reason instanceof TenantExistsError);
});

/**
 * The admin backend running a statement that contains `text`, once it waits (on a lock). The tests
 * that kill one are serial: a concurrent test's backend must not be the one found.
 */
async function waitingBackend(db: TestDatabase, text: string): Promise<number> {
  return waitFor(
    async () => (await db.superQuery(`SELECT pid FROM pg_stat_activity WHERE datname = $1 AND usename = $2 AND query LIKE '%' || $3 || '%' AND wait_event_type = 'Lock'`, [db.name, db.config.roles.admin, text])).rows[0]?.pid as number | undefined,
    { message: `an admin backend waiting in ${text}` },
  );
}

/** A tenant transaction of the app role, open (its first statement answered) until `end()`. */
async function openTransaction(db: TestDatabase, tenantId: string): Promise<{ end(): Promise<void> }> {
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  let started!: () => void;
  const open = new Promise<void>((resolve) => (started = resolve));
  const done = withTenantTransaction(db.appPool, tenantId, async (tx) => {
    await tx.query('SELECT 1');
    started();
    await held;
  }, { tenancy: db.config });
  await Promise.race([open, done]);
  return {
    end: async () => {
      release();
      await done;
    },
  };
}

test.serial('the purge connection killed while it waits for a running tenant transaction: nothing deleted, no purge claimed, a re-run finishes', async (t) => {
  const { db, admin } = t.context;
  const tenant = await admin.createTenant({ slug: slug('killed'), name: 'Killed' });
  await db.superQuery(`INSERT INTO orders (tenant_id, item) SELECT $1, 'x' FROM generate_series(1, 3)`, [tenant.id]);
  await admin.deleteTenant(tenant.id);
  const stale = await openTransaction(db, tenant.id);
  const purging = admin.purgeTenant(tenant.id, { actor: 'ops:kill', reason: 'gdpr' });
  const pid = await waitingBackend(db, 'pg_advisory_xact_lock');
  await db.superQuery('SELECT pg_terminate_backend($1)', [pid]);
  await t.throwsAsync(purging);
  await stale.end();
  t.is((await db.superQuery('SELECT count(*)::int AS n FROM orders WHERE tenant_id = $1', [tenant.id])).rows[0].n, 3);
  t.deepEqual((await auditOf(db, tenant.id)).map((r) => r.action), ['create', 'delete'], 'no purge row for a purge that did not happen');
  const report = await admin.purgeTenant(tenant.id, { actor: 'ops:kill', reason: 'gdpr' });
  t.true(report.complete);
  t.is((await db.superQuery('SELECT count(*)::int AS n FROM orders WHERE tenant_id = $1', [tenant.id])).rows[0].n, 0);
  t.like((await auditOf(db, tenant.id)).at(-1), { action: 'purge', actor: 'ops:kill', reason: 'gdpr', after: { complete: true } });
});

test.serial('a tenant transaction left open does not hold the purge, nor the registry row it locks, forever: PurgeBlockedError after lockTimeoutMs, nothing deleted, a re-run finishes', async (t) => {
  const { db } = t.context;
  const admin = new TenantAdminService(db.adminPool, { tenancy: db.config, purgeLockTimeoutMs: 300 });
  const tenant = await admin.createTenant({ slug: slug('left-open'), name: 'Left Open' });
  await db.superQuery(`INSERT INTO orders (tenant_id, item) SELECT $1, 'x' FROM generate_series(1, 3)`, [tenant.id]);
  // An instance that had not heard of the delete, its transaction left idle (a request stuck upstream).
  const stale = await openTransaction(db, tenant.id);
  t.teardown(() => stale.end());
  await admin.deleteTenant(tenant.id);
  const error = await t.throwsAsync(admin.purgeTenant(tenant.id, { actor: 'ops:blocked' }), { instanceOf: PurgeBlockedError });
  t.is(error?.status, 503);
  t.is(error?.code, 'LBMT_PURGE_BLOCKED');
  t.is((await db.superQuery('SELECT count(*)::int AS n FROM orders WHERE tenant_id = $1', [tenant.id])).rows[0].n, 3, 'nothing deleted');
  t.deepEqual((await auditOf(db, tenant.id)).map((r) => r.action), ['create', 'delete'], 'no purge claimed');
  // The registry row is not left locked: another admin action on it goes through at once.
  await t.throwsAsync(admin.activateTenant(tenant.id), { instanceOf: TenantInputError, message: /deleted/ });
  await stale.end();
  t.true((await admin.purgeTenant(tenant.id)).complete);
  t.is((await db.superQuery('SELECT count(*)::int AS n FROM orders WHERE tenant_id = $1', [tenant.id])).rows[0].n, 0);
  await t.throwsAsync(new TenantAdminService(db.adminPool, { tenancy: db.config, purgeLockTimeoutMs: 0 }).purgeTenant(tenant.id), { instanceOf: TypeError, message: /lockTimeoutMs/ });
});

/** A service whose onboarding seeds rows into the shared database, then runs `after` (the step to attack). */
function seeding(db: TestDatabase, after: (tenantId: string) => Promise<void>) {
  const pools = new TenantDBPool({ tenantService: new PgTenantService(db.appPool, { tenancy: db.config }), sharedPool: db.appPool, tenancy: db.config });
  return new TenantAdminService(db.adminPool, {
    tenancy: db.config,
    onboarding: {
      pools,
      seed: async ({ tenant, withTenantTransaction: inTenant }) => {
        await inTenant((tx) => tx.query(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'seeded'), ($1, 'seeded')`, [tenant.id]));
        await after(tenant.id);
      },
    },
  });
}

test.serial('the onboarding connection killed while it activates: the seeded rows purged, the row removed, the audit says onboarding-failed at activate', async (t) => {
  const { db } = t.context;
  const locker = new pg.Client({ connectionString: db.superUrl });
  await locker.connect();
  t.teardown(() => locker.end());
  const s = slug('activate-killed');
  let id = '';
  const service = seeding(db, async (tenantId) => {
    id = tenantId;
    // Holds the registry row, so that the activation waits on it and can be killed there.
    await locker.query('BEGIN');
    await locker.query('SELECT 1 FROM linkbay.tenants WHERE id = $1 FOR UPDATE', [tenantId]);
  });
  const creating = service.createTenant({ slug: s, name: 'Activate Killed' }, { actor: 'ops:onboard' });
  const pid = await waitingBackend(db, "status = 'active'");
  await db.superQuery('SELECT pg_terminate_backend($1)', [pid]);
  await waitFor(async () => (await db.superQuery(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1`, [pid])).rows[0].n === 0, { message: 'the backend is gone' });
  await locker.query('COMMIT');
  const error = (await t.throwsAsync(creating, { instanceOf: OnboardingError })) as OnboardingError;
  t.is(error.step, 'activate');
  t.deepEqual(error.undoFailures, []);
  t.is((await db.superQuery('SELECT count(*)::int AS n FROM orders WHERE tenant_id = $1', [id])).rows[0].n, 0);
  t.is((await db.superQuery('SELECT count(*)::int AS n FROM linkbay.tenants WHERE id = $1', [id])).rows[0].n, 0);
  const audit = await auditOf(db, id);
  t.is(audit.at(-1)!.action, 'onboarding-failed');
  t.like(audit.at(-1)!.after, { step: 'activate' });
  t.true(audit.every((r) => r.actor === 'ops:onboard'));
});

test('an onboarding whose undo cannot remove the registry row: every status change the row went through has its audit row', async (t) => {
  const { db } = t.context;
  const s = slug('undo-stuck');
  // The registry row cannot be deleted (a failure at the undo's last step).
  await db.superQuery(`CREATE OR REPLACE FUNCTION public.refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF OLD.slug = '${s}' THEN RAISE EXCEPTION 'refused'; END IF; RETURN OLD; END $$`);
  await db.superQuery(`CREATE TRIGGER refuse_delete BEFORE DELETE ON linkbay.tenants FOR EACH ROW EXECUTE FUNCTION public.refuse_delete()`);
  t.teardown(() => db.superQuery('DROP TRIGGER refuse_delete ON linkbay.tenants'));
  let id = '';
  const service = seeding(db, async (tenantId) => {
    id = tenantId;
    throw new Error('seed failed');
  });
  const error = (await t.throwsAsync(service.createTenant({ slug: s, name: 'Undo Stuck' }, { actor: 'ops:onboard' }), { instanceOf: OnboardingError })) as OnboardingError;
  t.deepEqual(error.undoFailures.map((f) => f.step), ['registry']);
  const { rows } = await db.superQuery('SELECT status FROM linkbay.tenants WHERE id = $1', [id]);
  const audit = await auditOf(db, id);
  const changes = audit.filter((r) => r.after && typeof r.after.status === 'string');
  t.is(changes.at(-1)!.after.status, rows[0].status, `the registry says ${rows[0].status}; the audit's last status is ${changes.at(-1)!.after.status} (${audit.map((r) => r.action).join(', ')})`);
  t.is((await db.superQuery('SELECT count(*)::int AS n FROM orders WHERE tenant_id = $1', [id])).rows[0].n, 0);
});

test('suspend, activate and update during an onboarding are refused; a delete during it wins and the onboarding undoes itself', async (t) => {
  const { db } = t.context;
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  let seeded!: (id: string) => void;
  const seededId = new Promise<string>((resolve) => (seeded = resolve));
  const service = seeding(db, async (tenantId) => {
    seeded(tenantId);
    await held;
  });
  const creating = service.createTenant({ slug: slug('racing'), name: 'Racing' });
  const id = await seededId;
  await t.throwsAsync(service.suspendTenant(id), { instanceOf: TenantInputError });
  await t.throwsAsync(service.activateTenant(id), { instanceOf: TenantInputError });
  await t.throwsAsync(service.updateTenant(id, { name: 'x' }), { instanceOf: TenantInputError });
  await service.deleteTenant(id, { actor: 'ops:stop' });
  release();
  const error = (await t.throwsAsync(creating, { instanceOf: OnboardingError })) as OnboardingError;
  t.is(error.step, 'activate');
  t.is((await db.superQuery('SELECT count(*)::int AS n FROM orders WHERE tenant_id = $1', [id])).rows[0].n, 0);
  const audit = await auditOf(db, id);
  t.deepEqual(audit.map((r) => r.action).filter((a) => a !== 'purge'), ['create', 'delete', 'onboarding-failed'].filter((a) => audit.some((r) => r.action === a)));
  t.true(audit.some((r) => r.action === 'delete' && r.actor === 'ops:stop'));
});

test.serial('two onboardings of one slug at once: one tenant, one 409, nothing of the loser left', async (t) => {
  const { db } = t.context;
  const s = slug('same');
  const service = seeding(db, async () => undefined);
  const results = await Promise.allSettled([service.createTenant({ slug: s, name: 'A' }), service.createTenant({ slug: s, name: 'B' })]);
  t.is(results.filter((r) => r.status === 'fulfilled').length, 1);
  t.true(results.some((r) => r.status === 'rejected' && r.reason instanceof TenantExistsError));
  const { rows } = await db.superQuery(`SELECT id::text, status FROM linkbay.tenants WHERE slug = $1`, [s]);
  t.is(rows.length, 1);
  t.is(rows[0].status, 'active');
  t.is((await db.superQuery('SELECT count(*)::int AS n FROM orders WHERE tenant_id = $1', [rows[0].id])).rows[0].n, 2);
});

test('the app role can neither insert, alter, nor disable the audit log, nor write it through a tenant transaction', async (t) => {
  const { db, admin } = t.context;
  const tenant = await admin.createTenant({ slug: slug('forger'), name: 'Forger' });
  for (const sql of [
    `INSERT INTO linkbay.audit_log (actor, action, subject_tenant) VALUES ('ops:jane', 'activate', '${tenant.id}')`,
    `UPDATE linkbay.audit_log SET actor = 'x'`,
    `DELETE FROM linkbay.audit_log`,
    `ALTER TABLE linkbay.audit_log DISABLE TRIGGER audit_log_append_only`,
    `TRUNCATE linkbay.audit_log`,
  ]) {
    await t.throwsAsync(db.appPool.query(sql), { code: '42501' }, sql);
    await t.throwsAsync(withTenantTransaction(db.appPool, tenant.id, (tx) => tx.query(sql), { tenancy: db.config }), undefined, sql);
  }
  // The admin role appends only.
  await t.throwsAsync(db.adminPool.query(`UPDATE linkbay.audit_log SET actor = 'x'`), { code: '42501' });
  await t.throwsAsync(db.adminPool.query(`ALTER TABLE linkbay.audit_log DISABLE TRIGGER audit_log_append_only`), { code: '42501' });
  t.is((await auditOf(db, tenant.id)).length, 1);
});

test.serial('the onboarding server connection killed before a failing seed: the database left behind is named by the audit row, the registry row kept as deleted', async (t) => {
  const { db } = t.context;
  const database = `${db.name}_killed`;
  const databaseUrl = withUrl(db.appUrl, { database });
  const root = new pg.Client({ connectionString: serverUrl() });
  await root.connect();
  t.teardown(async () => {
    await root.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await root.end();
  });
  let id = '';
  const service = new TenantAdminService(db.adminPool, {
    tenancy: db.config,
    onboarding: {
      database: { adminUrl: serverUrl() },
      seed: async ({ tenant }) => {
        id = tenant.id;
        // The connection that created the database and holds the onboarding lock.
        // This test's only: other files' onboardings run on the same server.
        const { rows } = await root.query(`SELECT pid FROM pg_stat_activity WHERE query LIKE 'CREATE DATABASE%' AND query LIKE $1 AND pid <> pg_backend_pid()`, [`%${database}%`]);
        t.is(rows.length, 1);
        await root.query('SELECT pg_terminate_backend($1)', [rows[0].pid]);
        throw new Error('seed failed');
      },
    },
  });
  const error = (await t.throwsAsync(service.createTenant({ slug: slug('server-killed'), name: 'Server Killed', databaseUrl }, { actor: 'ops:onboard' }), { instanceOf: OnboardingError })) as OnboardingError;
  t.is(error.step, 'seed');
  const left = (await root.query('SELECT count(*)::int AS n FROM pg_database WHERE datname = $1', [database])).rows[0].n as number;
  const { rows } = await db.superQuery('SELECT status FROM linkbay.tenants WHERE id = $1', [id]);
  const failed = (await auditOf(db, id)).at(-1)!;
  t.is(failed.action, 'onboarding-failed');
  t.is(failed.actor, 'ops:onboard');
  if (left === 0) {
    t.is(rows.length, 0, 'undone whole: no row');
  } else {
    t.is(rows[0]?.status, 'deleted', 'something is left: the id is kept');
    t.true(error.undoFailures.some((f) => f.step === 'database'));
    t.like(failed.after, { step: 'seed', status: 'deleted' });
    t.deepEqual(failed.after.undoFailed, error.undoFailures.map((f) => f.step), 'the audit row says what could not be undone');
    t.is(failed.before.status, 'provisioning', '`before` is the row before the change');
  }
});

// Design gap, not fixed here: `occurred_at` is the transaction's start (now()) and ids are taken at
// INSERT, neither in commit order. A row of a long transaction (a purge waiting for a tenant's
// transactions, a change joined to a caller's transaction) commits after rows that sort after it,
// so a consumer tailing the log (`since` its last row's time, or ids above its last) never sees it.
// A fix needs a commit-ordered cursor (e.g. an xid8 column and only rows below the snapshot's xmin).
test.serial('a consumer following the audit log (tailAudit) sees every row, also one whose transaction committed after later rows; listAudit by `since` would have missed it', async (t) => {
  const { db, admin } = t.context;
  const early = await admin.createTenant({ slug: slug('tail-early'), name: 'Early' });
  const late = await admin.createTenant({ slug: slug('tail-late'), name: 'Late' });
  // The consumer has caught up with everything so far, the two create rows included.
  const creates = (await admin.listAudit({ action: 'create', limit: 1000 })).entries.filter((e) => e.tenantId === early.id || e.tenantId === late.id).map((e) => e.id);
  let cursor: string | undefined;
  const seen = new Set<string>();
  await until(async () => {
    const tail = await admin.tailAudit({ ...(cursor ? { after: cursor } : {}), limit: 1000 });
    cursor = tail.next;
    for (const entry of tail.entries) seen.add(entry.id);
    return creates.every((id) => seen.has(id)) && tail.entries.length === 0;
  }, 30_000, 'the tail to catch up');
  const client = new pg.Client({ connectionString: db.adminUrl });
  await client.connect();
  t.teardown(() => client.end());
  await client.query('BEGIN');
  await new TenantAdminService(client, { tenancy: db.config }).suspendTenant(early.id, { actor: 'ops:slow' });
  await admin.suspendTenant(late.id, { actor: 'ops:fast' });
  // The list, newest first, shows the fast row; a consumer polling it by time would remember it as its newest.
  const first = await admin.listAudit({ limit: 1000 });
  t.is(first.entries[0]!.actor, 'ops:fast');
  // The tail holds the fast row back while the slow transaction, which began before it, runs.
  const held = await admin.tailAudit({ after: cursor!, limit: 1000 });
  const ours = (entries: readonly AuditEntry[]) => entries.filter((e) => e.tenantId === early.id || e.tenantId === late.id);
  t.deepEqual(ours(held.entries).map((e) => e.actor), []);
  await client.query('COMMIT');
  const bySince = await admin.listAudit({ since: first.entries[0]!.occurredAt, limit: 1000 });
  t.false(bySince.entries.some((e) => e.actor === 'ops:slow'), 'by `since`, the late-committed row is behind the consumer (why tailAudit exists)');
  // Served once every write transaction on the server that began before them has ended (other
  // test files run on this server): waited for, with a deadline.
  const next = await until(async () => {
    const read = await admin.tailAudit({ after: held.next, limit: 1000 });
    return ours(read.entries).length >= 2 && read;
  }, 30_000, 'the tail to serve both rows');
  t.deepEqual(ours(next.entries).map((e) => e.actor), ['ops:slow', 'ops:fast'], 'in the order of their transactions, nothing missed');
  t.deepEqual(ours((await admin.tailAudit({ after: next.next })).entries), []);
  for (const bad of ['1', '1.', '.1', 'x.1', '01.1', '1.2.3', `${'9'.repeat(21)}.1`]) {
    await t.throwsAsync(admin.tailAudit({ after: bad }), { code: 'LBMT_TENANT_INPUT_INVALID' }, bad);
  }
  await t.throwsAsync(admin.tailAudit({ limit: 0 }), { code: 'LBMT_TENANT_INPUT_INVALID' });
});

test.serial('the onboarding connection killed at its first step (the registry INSERT, waiting on a slug being taken): nothing written, no audit row, the slug free again', async (t) => {
  const { db } = t.context;
  const s = slug('insert-killed');
  const holder = new pg.Client({ connectionString: db.superUrl });
  await holder.connect();
  t.teardown(() => holder.end());
  await holder.query('BEGIN');
  await holder.query(`INSERT INTO linkbay.tenants (slug, name) VALUES ($1, 'Holder')`, [s]);
  let seeded = false;
  const service = seeding(db, async () => {
    seeded = true;
  });
  const creating = service.createTenant({ slug: s, name: 'Insert Killed' }, { actor: 'ops:onboard' });
  const pid = await waitingBackend(db, 'INSERT INTO linkbay.tenants');
  await db.superQuery('SELECT pg_terminate_backend($1)', [pid]);
  const error = await t.throwsAsync(creating);
  t.false(error instanceof OnboardingError, 'no onboarding step ran: the error is the connection\'s');
  await holder.query('ROLLBACK');
  t.false(seeded);
  t.is((await db.superQuery(`SELECT count(*)::int AS n FROM linkbay.tenants WHERE slug = $1`, [s])).rows[0].n, 0);
  t.is((await db.superQuery(`SELECT count(*)::int AS n FROM linkbay.audit_log WHERE after->>'slug' = $1`, [s])).rows[0].n, 0);
  const again = await service.createTenant({ slug: s, name: 'Second Try' });
  t.is(again.status, 'active');
});

test('a delete and a purge during an onboarding\'s seed, and seed rows written after the purge: the undo purges those too', async (t) => {
  const { db } = t.context;
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  let seeded!: (id: string) => void;
  const seededId = new Promise<string>((resolve) => (seeded = resolve));
  const pools = new TenantDBPool({ tenantService: new PgTenantService(db.appPool, { tenancy: db.config }), sharedPool: db.appPool, tenancy: db.config });
  const service = new TenantAdminService(db.adminPool, {
    tenancy: db.config,
    onboarding: {
      pools,
      seed: async ({ tenant, withTenantTransaction: inTenant }) => {
        await inTenant((tx) => tx.query(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'before')`, [tenant.id]));
        seeded(tenant.id);
        await held;
        await inTenant((tx) => tx.query(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'after the purge')`, [tenant.id]));
      },
    },
  });
  const creating = service.createTenant({ slug: slug('purged-midway'), name: 'Purged Midway' });
  const id = await seededId;
  await service.deleteTenant(id, { actor: 'ops:stop' });
  const report = await service.purgeTenant(id, { actor: 'ops:stop' });
  t.is(report.tables.find((x) => x.table === 'public.orders')!.deleted, 1);
  release();
  const error = (await t.throwsAsync(creating, { instanceOf: OnboardingError })) as OnboardingError;
  t.is(error.step, 'activate');
  t.is((await db.superQuery('SELECT count(*)::int AS n FROM orders WHERE tenant_id = $1', [id])).rows[0].n, 0);
  const audit = await auditOf(db, id);
  t.deepEqual(audit.map((r) => r.action), ['create', 'delete', 'purge', 'purge', 'onboarding-failed']);
});

test('a named token whose actor the audit log would refuse (a bidi override, a zero-width space) is refused when configured, not on every request', async (t) => {
  for (const actor of ['ops:\u202ejane', 'ops:\u200bjane', 'ops:\u0085jane', 'ops:\u2028jane', 'ops:\ud800']) {
    t.throws(() => requireBearerToken({ token: [{ token: 'x'.repeat(20), actor }] }), { instanceOf: TypeError, message: /actor/ }, JSON.stringify(actor));
  }
  t.notThrows(() => requireBearerToken({ token: [{ token: 'x'.repeat(20), actor: 'ops:jürgen' }] }));
});

test('the legacy export route (createMigrationRouter) hands out every row of a tenant: it writes its export audit row first, as the token actor', async (t) => {
  const { db, admin } = t.context;
  const tenant = await admin.createTenant({ slug: slug('exported'), name: 'Exported' });
  await db.superQuery(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'secret')`, [tenant.id]);
  const pools = new TenantDBPool({ tenantService: new PgTenantService(db.appPool, { tenancy: db.config }), sharedPool: db.appPool, tenancy: db.config });
  const service = new TenantMigrationService({ admin, pools, tenancy: db.config });
  const app = new Koa();
  const router = createMigrationRouter(service, { authorize: requireBearerToken({ token: [{ token, actor: 'ops:exporter' }] }), targets: {} });
  app.use(router.routes());
  const response = await request(app.callback()).get(`/admin/tenants/${tenant.id}/export`).set('authorization', `Bearer ${token}`).set('x-audit-reason', 'dsar 12');
  t.is(response.status, 200);
  t.true(JSON.stringify(response.body.tables).includes('secret'));
  t.like((await auditOf(db, tenant.id)).at(-1), { action: 'export', actor: 'ops:exporter', reason: 'dsar 12' });
});
