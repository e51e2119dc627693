/**
 * The audit log: a row for every admin route (called over HTTP), as the token's actor with the
 * X-Audit-Reason, written in the same transaction as the change (a failing audit insert leaves the
 * change undone), kept after the tenant's purge, closed to the app role and append-only for the
 * admin role and the owner; GET /admin/audit filters and pages, 422 naming a bad filter, 401/403.
 */
import anyTest, { type TestFn } from 'ava';
import Koa from 'koa';
import request from 'supertest';
import pg from 'pg';
import { runWithAuditContext, TenantAdminService, TenantInputError, withSystemContext } from '../src/index.js';
import { createAdminRouter, createPortabilityRouter, requireBearerToken } from '../src/koa/index.js';
import { TenantMoveJobs } from '../src/portability/index.js';
import { portabilityFixture, type PortabilityFixture } from './helpers/portability.js';
import { waitFor } from './helpers/wait.js';
import { withUrl } from './helpers/db.js';

interface Context extends PortabilityFixture {
  server: ReturnType<Koa['callback']>;
  jobs: TenantMoveJobs;
}
const test = anyTest as TestFn<Context>;
const JANE = 'jane-token-0123456789abcdef';
const PLAIN = 'plain-token-0123456789abcdef';

test.before(async (t) => {
  const f = await portabilityFixture();
  const targetPool = f.target.pool(f.target.ownerUrl, { max: 2 });
  const jobs = new TenantMoveJobs({ portability: f.portability, adminPool: f.source.adminPool, targets: { eu: { databaseUrl: f.target.appUrl, targetPool } }, settleMs: 0 });
  const authorize = requireBearerToken({ token: [{ token: JANE, actor: 'ops:jane' }, PLAIN], maxFailures: 1000 });
  const app = new Koa();
  const admin = createAdminRouter(f.admin, { authorize });
  const portability = createPortabilityRouter(f.portability, { authorize, importTargets: { eu: targetPool }, jobs });
  app.use(admin.routes()).use(admin.allowedMethods()).use(portability.routes()).use(portability.allowedMethods());
  t.context = { ...f, server: app.callback(), jobs };
});
test.after.always((t) => t.context.close?.());

let counter = 0;
const slug = (prefix: string) => `${prefix}-${process.pid}-${++counter}`;
const as = (token: string, reason?: string) => ({ authorization: `Bearer ${token}`, ...(reason ? { 'x-audit-reason': reason } : {}) });

async function auditRows(t: { context: Context }, tenantId: string) {
  const { rows } = await t.context.source.superQuery(`SELECT * FROM linkbay.audit_log WHERE subject_tenant = $1 ORDER BY id`, [tenantId]);
  return rows as Array<{ id: string; actor: string; action: string; before: any; after: any; reason: string | null; occurred_at: Date }>;
}

test.serial('every admin route writes its audit row, as the token actor with the X-Audit-Reason; the rows outlive the purge', async (t) => {
  const { source } = t.context;
  const http = request(t.context.server);
  const reason = 'ticket 4711';
  const created = await http.post('/admin/tenants').set(as(JANE, reason)).send({ slug: slug('audited'), name: 'Audited' });
  t.is(created.status, 201);
  const id = created.body.id as string;
  await source.superQuery(`INSERT INTO accounts (tenant_id, name) VALUES ($1, 'first'), ($1, 'second')`, [id]);
  t.is((await http.patch(`/admin/tenants/${id}`).set(as(JANE, reason)).send({ name: 'Audited Inc' })).status, 200);
  t.is((await http.post(`/admin/tenants/${id}/suspend`).set(as(JANE, reason))).status, 200);
  t.is((await http.post(`/admin/tenants/${id}/activate`).set(as(JANE, reason))).status, 200);
  const exported = await http.get(`/admin/tenants/${id}/export`).set(as(JANE, reason)).buffer(true).parse((res, done) => {
    let text = '';
    res.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
    res.on('end', () => done(null, text));
  });
  t.is(exported.status, 200);
  const imported = await http.post(`/admin/tenants/${id}/import?into=eu&dryRun=true`).set(as(JANE, reason)).set('content-type', 'application/x-ndjson').send(exported.body as string);
  t.is(imported.status, 200);
  const moved = await http.post(`/admin/tenants/${id}/move`).set(as(JANE, reason)).send({ target: 'eu' });
  t.is(moved.status, 202);
  await waitFor(async () => (await t.context.jobs.get(moved.body.id)).state === 'succeeded', { message: 'the move succeeded' });
  t.is((await http.delete(`/admin/tenants/${id}`).set(as(JANE, reason))).status, 204);
  const purged = await http.post(`/admin/tenants/${id}/purge`).set(as(JANE, reason));
  t.is(purged.status, 200);

  const rows = await auditRows(t, id);
  const actions = rows.map((r) => r.action);
  for (const action of ['create', 'update', 'suspend', 'activate', 'export', 'import', 'move-started', 'move-succeeded', 'delete', 'purge']) {
    t.true(actions.includes(action), `${action} audited (${actions.join(', ')})`);
  }
  t.true(rows.every((r) => r.actor === 'ops:jane' && r.reason === reason), 'every row names the token actor and the reason');
  const update = rows.find((r) => r.action === 'update' && r.after.name === 'Audited Inc')!;
  t.like(update.before, { name: 'Audited', status: 'active' });
  const suspend = rows.find((r) => r.action === 'suspend')!;
  t.deepEqual([suspend.before.status, suspend.after.status], ['active', 'suspended']);
  // The move's switch to the target (an update whose URL carries the app role's password): redacted.
  const switched = rows.find((r) => r.action === 'update' && r.after.databaseUrl)!;
  t.truthy(switched);
  t.false(JSON.stringify(rows).includes('lbmt-test'), 'no database password in the audit log');
  t.regex(switched.after.databaseUrl, /:\*\*\*@/);
  t.like(rows.find((r) => r.action === 'import')!.after, { outcome: 'succeeded', dryRun: true });
  t.like(rows.find((r) => r.action === 'move-succeeded')!.after, { job: moved.body.id, target: 'eu' });
  t.like(rows.find((r) => r.action === 'purge')!.after, { tenantId: id, complete: true });
  // Purged: the tenant's rows are gone from every tenant table, its audit rows are not.
  t.is((await source.superQuery('SELECT count(*)::int AS n FROM accounts WHERE tenant_id = $1', [id])).rows[0].n, 0);
  t.false((purged.body.tables as Array<{ table: string }>).some((table) => table.table.startsWith('linkbay.')), 'the audit log is not a tenant table');
  const listed = await http.get(`/admin/audit?tenant=${id}&limit=1000`).set(as(PLAIN));
  t.is(listed.status, 200);
  t.deepEqual(listed.body.entries.map((e: { action: string }) => e.action), [...actions].reverse(), 'newest first');
});

test('a plain token is audited as admin; a request without a reason records none; a bad X-Audit-Reason is 422', async (t) => {
  const http = request(t.context.server);
  const created = await http.post('/admin/tenants').set(as(PLAIN)).send({ slug: slug('plain'), name: 'Plain' });
  const [row] = await auditRows(t, created.body.id);
  t.like(row, { actor: 'admin', action: 'create', reason: null });
  const bad = await http.post(`/admin/tenants/${created.body.id}/suspend`).set(as(PLAIN, 'x'.repeat(501)));
  t.is(bad.status, 422);
  t.regex(bad.body.detail, /X-Audit-Reason/);
  t.is((await t.context.admin.getTenant(created.body.id)).status, 'active', 'refused before anything changed');
  // Control and format characters would rewrite what a terminal or a UI shows of the trail.
  for (const reason of ['bidi \u202e override', 'zero\u200bwidth', 'line\u2028separator']) {
    await t.throwsAsync(t.context.admin.suspendTenant(created.body.id, { reason }), { message: /`reason` must be/ });
  }
  await t.throwsAsync(t.context.admin.suspendTenant(created.body.id, { actor: 'admin\u0085' }), { message: /`actor` must be/ });
});

test('the app role can neither read nor write the audit log; the admin role only appends; even the owner cannot rewrite it', async (t) => {
  const { source } = t.context;
  await t.throwsAsync(source.appPool.query('SELECT * FROM linkbay.audit_log'), { code: '42501' });
  await t.throwsAsync(source.appPool.query(`INSERT INTO linkbay.audit_log (actor, action) VALUES ('me', 'create')`), { code: '42501' });
  await source.adminPool.query(`INSERT INTO linkbay.audit_log (actor, action, reason) VALUES ('admin-test', 'create', 'append')`);
  t.true((await source.adminPool.query(`SELECT 1 FROM linkbay.audit_log WHERE actor = 'admin-test'`)).rowCount! >= 1);
  await t.throwsAsync(source.adminPool.query(`UPDATE linkbay.audit_log SET actor = 'someone else' WHERE actor = 'admin-test'`), { code: '42501' });
  await t.throwsAsync(source.adminPool.query(`DELETE FROM linkbay.audit_log WHERE actor = 'admin-test'`), { code: '42501' });
  // The superuser (stronger than the owner): stopped by the append-only trigger.
  await t.throwsAsync(source.superQuery(`UPDATE linkbay.audit_log SET actor = 'someone else' WHERE actor = 'admin-test'`), { message: /append-only/ });
  await t.throwsAsync(source.superQuery(`DELETE FROM linkbay.audit_log WHERE actor = 'admin-test'`), { message: /append-only/ });
  await t.throwsAsync(source.superQuery(`TRUNCATE linkbay.audit_log`), { message: /append-only/ });
  const owner = source.pool(source.ownerUrl, { max: 1 });
  await t.throwsAsync(owner.query(`DELETE FROM linkbay.audit_log WHERE actor = 'admin-test'`), { message: /append-only/ });
});

test.serial('a move that fails is audited: its start and its failure, as the actor who started it', async (t) => {
  const { admin, portability, source, target } = t.context;
  const broken = target.pool(withUrl(target.ownerUrl, { database: `${target.name}_nowhere` }), { max: 1 });
  const jobs = new TenantMoveJobs({ portability, adminPool: source.adminPool, targets: { nowhere: { databaseUrl: target.appUrl, targetPool: broken } }, settleMs: 0 });
  const tenant = await admin.createTenant({ slug: slug('unmovable'), name: 'Unmovable' });
  const job = await runWithAuditContext({ actor: 'ops:kim', reason: 'rebalancing' }, () => jobs.start(tenant.id, { target: 'nowhere' }));
  t.is((await jobs.run(job.id)).state, 'failed');
  const rows = (await auditRows(t, tenant.id)).filter((r) => r.action.startsWith('move-'));
  t.deepEqual(rows.map((r) => [r.action, r.actor, r.reason]), [
    ['move-started', 'ops:kim', 'rebalancing'],
    ['move-failed', 'ops:kim', 'rebalancing'],
  ]);
  t.like(rows[1]!.after, { job: job.id, target: 'nowhere' });
});

test.serial('an admin action whose audit row cannot be written changes nothing: the change and its row are one transaction', async (t) => {
  const { source, admin } = t.context;
  const victim = await admin.createTenant({ slug: slug('victim'), name: 'Victim' });
  const refusedSlug = slug('never');
  await source.superQuery(`
    CREATE FUNCTION public.refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.subject_tenant = '${victim.id}' OR NEW.after->>'slug' = '${refusedSlug}' THEN RAISE EXCEPTION 'audit refused'; END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER refuse_audit BEFORE INSERT ON linkbay.audit_log FOR EACH ROW EXECUTE FUNCTION public.refuse_audit();`);
  t.teardown(() => source.superQuery('DROP TRIGGER refuse_audit ON linkbay.audit_log; DROP FUNCTION public.refuse_audit()'));
  const before = await admin.getTenant(victim.id);
  await t.throwsAsync(admin.suspendTenant(victim.id), { message: 'audit refused' });
  await t.throwsAsync(admin.updateTenant(victim.id, { name: 'Changed' }), { message: 'audit refused' });
  await t.throwsAsync(admin.deleteTenant(victim.id), { message: 'audit refused' });
  await t.throwsAsync(admin.createTenant({ slug: refusedSlug, name: 'Never' }), { message: 'audit refused' });
  t.deepEqual(await admin.getTenant(victim.id), before, 'status, name and updated_at unchanged');
  t.is((await source.superQuery('SELECT count(*)::int AS n FROM linkbay.tenants WHERE slug = $1', [refusedSlug])).rows[0].n, 0, 'no registry row without its audit row');
  // Over HTTP: a 500 problem, and still nothing changed.
  const response = await request(t.context.server).post(`/admin/tenants/${victim.id}/suspend`).set(as(JANE));
  t.is(response.status, 500);
  t.is((await admin.getTenant(victim.id)).status, 'active');
});

test('GET /admin/audit filters by tenant, action, actor, since and until, and pages newest first', async (t) => {
  const { admin } = t.context;
  const http = request(t.context.server);
  const a = await admin.createTenant({ slug: slug('filter-a'), name: 'A' }, { actor: 'bob' });
  const b = await admin.createTenant({ slug: slug('filter-b'), name: 'B' }, { actor: 'carol' });
  for (let i = 0; i < 3; i += 1) {
    await admin.suspendTenant(a.id, { actor: 'bob', reason: `round ${i}` });
    await admin.activateTenant(a.id, { actor: 'carol' });
  }
  await admin.suspendTenant(b.id, { actor: 'bob' });
  const get = async (query: string) => {
    const response = await http.get(`/admin/audit?${query}`).set(as(PLAIN));
    t.is(response.status, 200, query);
    return response.body as { entries: Array<{ id: string; action: string; actor: string; tenantId: string; occurredAt: string; reason: string | null }>; next?: string };
  };
  const ofA = await get(`tenant=${a.id}`);
  t.deepEqual(ofA.entries.map((e) => e.action), ['activate', 'suspend', 'activate', 'suspend', 'activate', 'suspend', 'create']);
  t.true(ofA.entries.every((e) => e.tenantId === a.id));
  const ids = ofA.entries.map((e) => BigInt(e.id));
  t.deepEqual(ids, [...ids].sort((x, y) => (x > y ? -1 : 1)), 'newest first');
  t.deepEqual((await get(`tenant=${a.id}&action=suspend`)).entries.map((e) => e.reason), ['round 2', 'round 1', 'round 0']);
  t.deepEqual((await get(`tenant=${b.id}&actor=bob`)).entries.map((e) => e.action), ['suspend']);
  t.true((await get(`actor=carol&limit=1000`)).entries.every((e) => e.actor === 'carol'));
  const created = new Date(ofA.entries.at(-1)!.occurredAt);
  t.is((await get(`tenant=${a.id}&since=${encodeURIComponent(new Date(Date.now() + 3_600_000).toISOString())}`)).entries.length, 0);
  t.is((await get(`tenant=${a.id}&until=${encodeURIComponent(created.toISOString())}`)).entries.length, 0, 'until is exclusive');
  t.is((await get(`tenant=${a.id}&since=${encodeURIComponent(created.toISOString())}`)).entries.length, 7);

  // Pages of two: together exactly the whole list, in order, then no `next`.
  const paged: string[] = [];
  let after: string | undefined;
  for (let pages = 0; pages < 10; pages += 1) {
    const page = await get(`tenant=${a.id}&limit=2${after ? `&after=${after}` : ''}`);
    paged.push(...page.entries.map((e) => e.id));
    if (!page.next) break;
    t.is(page.entries.length, 2);
    after = page.next;
  }
  t.deepEqual(paged, ofA.entries.map((e) => e.id));
});

test('GET /admin/audit: invalid filters are 422 naming the field; no token 401, a wrong one 403, in any spelling of the path', async (t) => {
  const http = request(t.context.server);
  const cases: Array<[string, RegExp]> = [
    ['limit=0', /`limit`/],
    ['limit=abc', /`limit`/],
    ['limit=1001', /`limit`/],
    ['action=drop-everything', /`action`/],
    ['tenant=not-a-uuid', /`tenant`/],
    ['since=yesterday', /`since`/],
    ['until=2026-13-45T00:00:00Z', /`until`/],
    ['after=abc', /`after`/],
    ['actor=', /`actor`/],
  ];
  for (const [query, detail] of cases) {
    const response = await http.get(`/admin/audit?${query}`).set(as(PLAIN));
    t.is(response.status, 422, query);
    t.regex(String(response.headers['content-type']), /application\/problem\+json/);
    t.regex(response.body.detail, detail, query);
  }
  for (const path of ['/admin/audit', '/ADMIN/audit', '/admin/AUDIT', '/admin//audit']) {
    const none = await http.get(path);
    t.true(none.status === 401 || none.status === 404, `${path}: ${none.status}`);
    if (none.status === 404) continue;
    t.is((await http.get(path).set('authorization', 'Bearer wrong-token-0123456789abcdef')).status, 403, path);
  }
  t.is((await http.get('/admin/audit')).status, 401);
  t.is((await http.get('/ADMIN/audit')).status, 401);
});

test('service calls take { actor, reason } and refuse bad ones naming the field', async (t) => {
  const { admin } = t.context;
  const tenant = await admin.createTenant({ slug: slug('direct'), name: 'Direct' });
  await t.throwsAsync(admin.suspendTenant(tenant.id, { actor: '' }), { instanceOf: TenantInputError, message: /`actor`/ });
  await t.throwsAsync(admin.suspendTenant(tenant.id, { actor: 'ok', reason: 'line\nbreak' }), { instanceOf: TenantInputError, message: /`reason`/ });
  t.is((await admin.getTenant(tenant.id)).status, 'active');
  await admin.suspendTenant(tenant.id, { reason: 'by code' });
  const rows = await auditRows(t, tenant.id);
  t.deepEqual(rows.map((r) => [r.action, r.actor, r.reason]), [
    ['create', 'system', null],
    ['suspend', 'system', 'by code'],
  ]);
});

test('withSystemContext with `audit` records its reason and actor before a read (kept when the read fails), with a write in its transaction, and stays read only', async (t) => {
  const { source } = t.context;
  const reason = `audited invoicing ${process.pid}-${++counter}`;
  const rows = async () => (await source.superQuery('SELECT actor, action, subject_tenant, after, reason FROM linkbay.audit_log WHERE reason = $1 ORDER BY id', [reason])).rows;
  const refused = await t.throwsAsync(runWithAuditContext({ actor: 'billing-job' }, () => withSystemContext(source.adminPool, { reason, audit: true }, (sys) => sys.query('DELETE FROM accounts'))));
  t.is((refused as { code?: string }).code, '25006', 'read only');
  t.deepEqual(await rows(), [{ actor: 'billing-job', action: 'system-context', subject_tenant: null, after: { write: false }, reason }], 'the read left its trace though it failed');
  const count = await withSystemContext(source.adminPool, { reason, audit: { actor: 'ops:lee' } }, async (sys) => (await sys.query('SELECT count(*)::int AS n FROM accounts')).rows[0].n);
  t.is(typeof count, 'number');
  t.is((await rows()).length, 2);
  // A write rolled back leaves no row: it changed nothing.
  await t.throwsAsync(withSystemContext(source.adminPool, { reason, write: true, audit: { actor: 'ops:lee' } }, async (sys) => {
    await sys.query('SELECT 1');
    throw new Error('changed my mind');
  }));
  t.is((await rows()).length, 2);
});

test("on one client inside the caller's transaction, the change and its audit row join it: rolled back together", async (t) => {
  const { source, admin } = t.context;
  const tenant = await admin.createTenant({ slug: slug('joined'), name: 'Joined' });
  const client = new pg.Client({ connectionString: source.adminUrl });
  await client.connect();
  t.teardown(() => client.end());
  const onClient = new TenantAdminService(client, { tenancy: source.config });
  await client.query('BEGIN');
  t.is((await onClient.suspendTenant(tenant.id, { actor: 'tx-test' })).status, 'suspended');
  await client.query('ROLLBACK');
  t.is((await admin.getTenant(tenant.id)).status, 'active');
  t.false((await auditRows(t, tenant.id)).some((r) => r.actor === 'tx-test'));
  // Outside a transaction it opens its own; something with only `query` is refused.
  t.is((await onClient.suspendTenant(tenant.id, { actor: 'tx-test' })).status, 'suspended');
  t.true((await auditRows(t, tenant.id)).some((r) => r.actor === 'tx-test' && r.action === 'suspend'));
  const queryOnly = new TenantAdminService({ query: (text: string, values?: unknown[]) => source.adminPool.query(text, values) }, { tenancy: source.config });
  await t.throwsAsync(queryOnly.activateTenant(tenant.id), { instanceOf: TypeError, message: /one transaction/ });
});

test('GET /admin/audit/tail: the log oldest first with a cursor; a bad cursor or limit is 422; no token 401, a wrong one 403, in any spelling', async (t) => {
  const http = request(t.context.server);
  const first = await http.get('/admin/audit/tail?limit=1').set(as(PLAIN));
  t.is(first.status, 200);
  t.is(first.headers['cache-control'], 'no-store');
  t.regex(first.body.next, /^\d+\.\d+$/);
  // The cursor goes forward only: what the next call returns comes after what the first did.
  const after = await http.get(`/admin/audit/tail?after=${encodeURIComponent(first.body.next)}&limit=1000`).set(as(PLAIN));
  t.is(after.status, 200);
  t.false(after.body.entries.some((e: { id: string }) => first.body.entries.some((f: { id: string }) => f.id === e.id)));
  for (const [query, detail] of [['after=17', /`after`/], ['after=1.2%3B', /`after`/], ['limit=0', /`limit`/], ['limit=x', /`limit`/]] as const) {
    const response = await http.get(`/admin/audit/tail?${query}`).set(as(PLAIN));
    t.is(response.status, 422, query);
    t.regex(response.body.detail, detail, query);
  }
  for (const path of ['/admin/audit/tail', '/ADMIN/audit/tail', '/admin/AUDIT/TAIL', '/admin//audit/tail', '/admin/audit/tail/']) {
    const none = await http.get(path);
    t.true(none.status === 401 || none.status === 404, `${path}: ${none.status}`);
    if (none.status === 404) continue;
    t.is((await http.get(path).set('authorization', 'Bearer wrong-token-0123456789abcdef')).status, 403, path);
  }
});
