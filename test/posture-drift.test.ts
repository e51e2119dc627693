/**
 * Drift: the generated migrations record each tenant table's policies, grants and RLS flags in
 * linkbay.policy_manifest; doctor compares the live catalog with it. A freshly migrated database
 * has no drift; each test then breaks it one way by hand (as a superuser, the way a schema tool's
 * push or a hotfix would) and expects the finding, and that its suggested fix removes it.
 */
import test, { type ExecutionContext } from 'ava';
import pg from 'pg';
import { checkPosture, defineTenancy, generateRlsSql, migrateFiles, type Finding, type PostureReport } from '../src/index.js';
import { tableDrift, type TableState } from '../src/posture/drift.js';
import { createTestDatabase, ORDERS_SCHEMA, serverUrl, type TestDatabase } from './helpers/db.js';

// A few connections per database; other test files run at the same time (see posture.test.ts).
const MAX_DATABASES = 5;
let databases = 0;
const waiting: Array<() => void> = [];

/** A migrated database, and roles of the test's own (dropped after the database). */
async function database(t: ExecutionContext, options: { schema?: string; tables?: string[]; migrate?: boolean } = {}) {
  if (databases < MAX_DATABASES) databases += 1;
  else await new Promise<void>((resolve) => waiting.push(resolve));
  const db = await createTestDatabase({ schema: options.schema ?? ORDERS_SCHEMA, tenancy: { tables: options.tables ?? ['orders'] }, migrate: options.migrate });
  const roles: string[] = [];
  t.teardown(async () => {
    await db.drop();
    const root = new pg.Client({ connectionString: serverUrl() });
    await root.connect();
    try {
      for (const role of roles) await root.query(`DROP ROLE IF EXISTS ${role}`);
    } finally {
      await root.end();
    }
    const next = waiting.shift();
    if (next) next();
    else databases -= 1;
  });
  /** A role of this test (cluster-wide, so named after the database's roles). */
  const role = async (suffix: string, attributes = 'NOLOGIN') => {
    const name = `${db.config.roles.app}_${suffix}`;
    roles.push(name);
    await db.superQuery(`CREATE ROLE ${name} ${attributes}`);
    return name;
  };
  return { db, role };
}

const drift = (report: PostureReport) => report.findings.filter((f) => f.code.startsWith('LBMT_DRIFT_'));
const lines = (findings: Finding[]) => findings.map((f) => `${f.severity} ${f.code} ${f.object}`).sort();

/** doctor as the CLI runs it (a superuser) and as the application at start-up (the app role) agree on drift. */
async function driftOf(db: TestDatabase): Promise<Finding[]> {
  const asSuperuser = drift(await checkPosture(db.pool(db.superUrl, { max: 1 }), db.config));
  const asApp = drift(await checkPosture(db.appPool, db.config));
  if (JSON.stringify(asSuperuser) !== JSON.stringify(asApp)) throw new Error(`drift differs by role: ${JSON.stringify({ asSuperuser, asApp })}`);
  return asApp;
}

/** Applies a finding's fix as the superuser (its comment lines included: they are SQL comments). */
async function applyFix(db: TestDatabase, finding: Finding) {
  await db.superQuery(finding.fix);
}

test('a freshly generated and migrated database records every tenant table and reports no drift', async (t) => {
  const { db } = await database(t, { schema: `${ORDERS_SCHEMA} CREATE SCHEMA billing; CREATE TABLE billing.notes (tenant_id uuid NOT NULL, body text);`, tables: ['orders', 'billing.notes'] });
  t.deepEqual(await driftOf(db), []);
  const { rows } = await db.superQuery(`SELECT table_name, state FROM linkbay.policy_manifest ORDER BY 1`);
  t.deepEqual(rows.map((r) => r.table_name), ['billing.notes', 'public.orders']);
  const orders = rows.find((r) => r.table_name === 'public.orders')!.state as TableState;
  t.true(orders.rls && orders.force);
  t.deepEqual(Object.keys(orders.policies).sort(), ['lbmt_tenant_access', 'lbmt_tenant_isolation']);
  t.false(orders.policies.lbmt_tenant_isolation!.permissive);
  t.regex(orders.policies.lbmt_tenant_isolation!.using!, /current_setting\('app\.tenant_id'::text, true\)/);
  t.deepEqual(orders.grants[db.config.roles.app]!.sort(), ['DELETE', 'INSERT', 'SELECT', 'UPDATE']);
  t.is(orders.owner, db.config.roles.owner);
  // The app role reads the manifest but may not write it.
  const refused = await t.throwsAsync(db.appPool.query(`UPDATE linkbay.policy_manifest SET state = '{}'`));
  t.is((refused as { code?: string }).code, '42501');
  const record = await t.throwsAsync(db.appPool.query(`SELECT linkbay.record_table_state('public.orders')`));
  t.is((record as { code?: string }).code, '42501');
});

test('a policy dropped by hand: a restrictive one is an error, a permissive one a warning; the fix recreates them', async (t) => {
  const { db } = await database(t);
  await db.superQuery('DROP POLICY lbmt_tenant_isolation ON orders; DROP POLICY lbmt_tenant_access ON orders');
  const found = await driftOf(db);
  t.deepEqual(lines(found), ['error LBMT_DRIFT_POLICY_DROPPED public.orders', 'warning LBMT_DRIFT_POLICY_DROPPED public.orders']);
  const isolation = found.find((f) => f.severity === 'error')!;
  t.regex(isolation.message, /RESTRICTIVE policy lbmt_tenant_isolation is gone/);
  t.regex(isolation.fix, /^CREATE POLICY "lbmt_tenant_isolation" ON "public"\."orders" AS RESTRICTIVE FOR ALL TO PUBLIC\n  USING \(/);
  for (const finding of found) await applyFix(db, finding);
  t.deepEqual(await driftOf(db), [], 'the suggested fixes restore exactly what was migrated');
});

test('RLS disabled, and FORCE removed with RLS still enabled, are errors', async (t) => {
  const { db } = await database(t);
  await db.superQuery('ALTER TABLE orders DISABLE ROW LEVEL SECURITY');
  const disabled = await driftOf(db);
  t.deepEqual(lines(disabled), ['error LBMT_DRIFT_RLS_DISABLED public.orders']);
  await applyFix(db, disabled[0]!);
  t.deepEqual(await driftOf(db), []);

  await db.superQuery('ALTER TABLE orders NO FORCE ROW LEVEL SECURITY');
  const unforced = await driftOf(db);
  t.deepEqual(lines(unforced), ['error LBMT_DRIFT_FORCE_REMOVED public.orders']);
  t.is(unforced[0]!.fix, 'ALTER TABLE "public"."orders" FORCE ROW LEVEL SECURITY;');
  await applyFix(db, unforced[0]!);
  t.deepEqual(await driftOf(db), []);
});

test('a policy expression rewritten, or its roles changed, is an error naming what changed', async (t) => {
  const { db, role } = await database(t);
  // Still mentions the tenant column and the setting: the catalog checks alone could be fooled by a subtler rewrite.
  await db.superQuery(`ALTER POLICY lbmt_tenant_isolation ON orders USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid OR item = 'shared')`);
  const [rewritten, ...others] = await driftOf(db);
  t.deepEqual(others, []);
  t.is(rewritten!.code, 'LBMT_DRIFT_POLICY_CHANGED');
  t.is(rewritten!.severity, 'error');
  t.regex(rewritten!.message, /^policy lbmt_tenant_isolation is not as migrated: USING \(.+\) became \(.+OR.+shared.+\)$/);
  t.notRegex(rewritten!.message, /WITH CHECK/);
  await applyFix(db, rewritten!);
  t.deepEqual(await driftOf(db), []);

  const other = await role('other');
  await db.superQuery(`ALTER POLICY lbmt_tenant_access ON orders TO ${db.config.roles.app}, ${db.config.roles.owner}, ${other}`);
  const [widened] = await driftOf(db);
  t.is(widened!.code, 'LBMT_DRIFT_POLICY_CHANGED');
  t.regex(widened!.message, new RegExp(`lbmt_tenant_access .*became TO .*${other}`));
  await applyFix(db, widened!);
  t.deepEqual(await driftOf(db), []);
});

test('a permissive USING (true) policy added for a second role is a warning; a restrictive one is info; recording it ends the drift', async (t) => {
  const { db, role } = await database(t);
  const reporting = await role('reporting');
  await db.superQuery(`CREATE POLICY reporting_all ON orders AS PERMISSIVE FOR SELECT TO ${reporting} USING (true);
    CREATE POLICY no_archived ON orders AS RESTRICTIVE FOR ALL TO PUBLIC USING (item <> 'archived')`);
  const found = await driftOf(db);
  t.deepEqual(lines(found), ['info LBMT_DRIFT_POLICY_ADDED public.orders', 'warning LBMT_DRIFT_POLICY_ADDED public.orders']);
  const permissive = found.find((f) => f.severity === 'warning')!;
  t.regex(permissive.message, new RegExp(`policy reporting_all was not created by the migrations; it is permissive: it lets ${reporting} see rows \\(SELECT\\)`));
  t.regex(permissive.fix, /^DROP POLICY "reporting_all" ON "public"\."orders";\n-- or, if the change is meant to stay, record it: SELECT linkbay\.record_table_state\('"public"\."orders"'\);$/);
  // Kept on purpose: recorded again (as a migration of the user's would), it is no drift.
  await db.superQuery(`SELECT linkbay.record_table_state('"public"."orders"')`);
  t.deepEqual(await driftOf(db), []);
});

test('a grant widened: to PUBLIC or to a BYPASSRLS role is an error, to another role a warning, column-level too; a revoke is a warning', async (t) => {
  const { db, role } = await database(t);
  const other = await role('other');
  const bypass = await role('bypass', 'NOLOGIN BYPASSRLS');
  await db.superQuery(`GRANT SELECT ON orders TO PUBLIC; GRANT SELECT, UPDATE ON orders TO ${other}; GRANT SELECT (item) ON orders TO ${bypass};
    REVOKE DELETE ON orders FROM ${db.config.roles.app}`);
  const found = await driftOf(db);
  t.deepEqual(lines(found), [
    'error LBMT_DRIFT_GRANT_WIDENED public.orders',
    'error LBMT_DRIFT_GRANT_WIDENED public.orders',
    'warning LBMT_DRIFT_GRANT_NARROWED public.orders',
    'warning LBMT_DRIFT_GRANT_WIDENED public.orders',
  ]);
  const message = (pattern: RegExp) => found.find((f) => pattern.test(f.message))!;
  t.regex(message(/^PUBLIC was granted SELECT/).message, /every role, including any that bypasses RLS/);
  t.is(message(/^PUBLIC/).severity, 'error');
  t.is(message(new RegExp(`^${other} was granted`)).severity, 'warning');
  t.regex(message(new RegExp(`^${other} was granted`)).fix, new RegExp(`^REVOKE SELECT, UPDATE ON "public"\\."orders" FROM "${other}";`));
  const column = message(new RegExp(`^${bypass} was granted SELECT on column item`));
  t.is(column.severity, 'error');
  t.regex(column.fix, new RegExp(`^REVOKE SELECT \\("item"\\) ON "public"\\."orders" FROM "${bypass}";`));
  t.regex(message(/no longer has DELETE/).fix, new RegExp(`^GRANT DELETE ON "public"\\."orders" TO "${db.config.roles.app}";`));
  for (const finding of found) await applyFix(db, finding);
  t.deepEqual(await driftOf(db), []);

  // A grant option nobody migrated widens too; its fix revokes the option only.
  await db.superQuery(`GRANT SELECT ON orders TO ${db.config.roles.app} WITH GRANT OPTION`);
  const [option] = await driftOf(db);
  t.is(option!.code, 'LBMT_DRIFT_GRANT_WIDENED');
  t.regex(option!.fix, new RegExp(`^REVOKE GRANT OPTION FOR SELECT ON "public"\\."orders" FROM "${db.config.roles.app}";`));
  await applyFix(db, option!);
  t.deepEqual(await driftOf(db), []);
});

test('a policy renamed is a warning, not a drop and an add', async (t) => {
  const { db } = await database(t);
  await db.superQuery('ALTER POLICY lbmt_tenant_isolation ON orders RENAME TO tenant_isolation');
  const found = await driftOf(db);
  t.deepEqual(lines(found), ['warning LBMT_DRIFT_POLICY_RENAMED public.orders']);
  t.regex(found[0]!.message, /lbmt_tenant_isolation is there as tenant_isolation/);
  await applyFix(db, found[0]!);
  t.deepEqual(await driftOf(db), []);
});

test('a table dropped and re-created by hand shows each thing it lost, and the fixes restore it', async (t) => {
  const { db } = await database(t);
  await db.superQuery(`DROP TABLE orders; ${ORDERS_SCHEMA}`);
  const found = await driftOf(db);
  // Owned by the superuser who re-created it: its own privileges come with ownership, not reported as a grant.
  t.deepEqual(lines(found), [
    'error LBMT_DRIFT_FORCE_REMOVED public.orders',
    'error LBMT_DRIFT_POLICY_DROPPED public.orders',
    'error LBMT_DRIFT_RLS_DISABLED public.orders',
    'warning LBMT_DRIFT_GRANT_NARROWED public.orders',
    'warning LBMT_DRIFT_GRANT_NARROWED public.orders',
    'warning LBMT_DRIFT_OWNER_CHANGED public.orders',
    'warning LBMT_DRIFT_POLICY_DROPPED public.orders',
  ]);
  t.false((await checkPosture(db.appPool, db.config)).ok);
  for (const finding of found) await applyFix(db, finding);
  t.deepEqual(await driftOf(db), []);
});

test('a table without a manifest entry is unrecorded (info); a database migrated without the library schema reports that once', async (t) => {
  const { db } = await database(t, { schema: `${ORDERS_SCHEMA} CREATE TABLE notes (tenant_id uuid NOT NULL, body text);`, tables: ['orders', 'notes'] });
  await db.superQuery(`DELETE FROM linkbay.policy_manifest WHERE table_name = 'public.notes'`);
  const found = await driftOf(db);
  t.deepEqual(lines(found), ['info LBMT_DRIFT_UNRECORDED public.notes']);
  t.regex(found[0]!.fix, /manifest-public-notes/);

  const { db: bare } = await database(t, { migrate: false });
  const files = generateRlsSql(bare.config, { includeRegistry: false });
  t.false(files.some((f) => /manifest/.test(f.name)), 'no manifest pieces without the library schema');
  await migrateFiles({ databaseUrl: bare.superUrl, files });
  const report = await checkPosture(bare.appPool, bare.config);
  t.deepEqual(lines(drift(report)), ['info LBMT_DRIFT_NO_MANIFEST table linkbay.policy_manifest']);
  t.true(report.ok, 'no manifest is no failure');
});

test('a manifest piece applied where the library migrations are not records nothing and does not fail', async (t) => {
  const { db } = await database(t, { migrate: false });
  const files = generateRlsSql(db.config).filter((f) => !f.name.includes('-linkbay-'));
  const applied = await migrateFiles({ databaseUrl: db.superUrl, files });
  t.true(applied.applied.some((name) => name.endsWith('-manifest-public-orders.sql')));
  const { rows } = await db.superQuery(`SELECT to_regclass('linkbay.policy_manifest') IS NULL AS missing`);
  t.true(rows[0].missing);
});

test('on engine "citus" an added permissive policy is an error: Citus ORs it with the permissive isolation policy on the shards', async (t) => {
  const { db, role } = await database(t);
  const reporting = await role('reporting');
  await db.superQuery(`CREATE POLICY reporting_all ON orders AS PERMISSIVE FOR SELECT TO ${reporting} USING (true)`);
  // Citus cannot run here: the comparison is given the live and recorded states this database holds.
  const { rows } = await db.superQuery(`SELECT m.state AS recorded, linkbay.table_state('orders') AS live FROM linkbay.policy_manifest m WHERE m.table_name = 'public.orders'`);
  const citus = defineTenancy({ ...db.config, engine: 'citus', tables: ['orders'] });
  const findings = tableDrift(citus, { schema: 'public', table: 'orders', recorded: rows[0].recorded, live: rows[0].live }, new Set());
  t.deepEqual(lines(findings), ['error LBMT_DRIFT_POLICY_ADDED public.orders']);
  t.regex(findings[0]!.message, /on Citus the isolation policy is permissive too/);
});

test('a rewrite that fails open while mentioning the column and the setting is caught by the catalog checks and as drift', async (t) => {
  const { db } = await database(t);
  // No tenant set: COALESCE falls back to the row's own tenant, so every row matches.
  const failsOpen = `tenant_id = COALESCE(NULLIF(current_setting('app.tenant_id', true), '')::uuid, tenant_id)`;
  await db.superQuery(`ALTER POLICY lbmt_tenant_isolation ON orders USING (${failsOpen}) WITH CHECK (${failsOpen})`);
  await db.superQuery(`INSERT INTO orders (tenant_id, item) VALUES (gen_random_uuid(), 'theirs')`);
  const leaked = await db.appPool.query('SELECT count(*)::int AS n FROM orders');
  t.is(leaked.rows[0].n, 1, 'the rewritten policy really leaks: no tenant set, a row visible');
  const report = await checkPosture(db.appPool, db.config);
  const errors = report.findings.filter((f) => f.severity === 'error');
  // The catalog checks read `column = value` with a value free of the column (findings.ts isTenantCheck).
  t.deepEqual(errors.map((f) => f.code), ['LBMT_ISOLATION_POLICY_MISSING', 'LBMT_DRIFT_POLICY_CHANGED']);
  t.regex(errors[1]!.message, /USING .* became .*COALESCE.*; WITH CHECK .* became .*COALESCE/);
  t.false(report.ok);
});

test('TRUNCATE or TRIGGER granted to any role is an error: row level security does not govern them', async (t) => {
  const { db, role } = await database(t);
  const other = await role('other');
  await db.superQuery(`GRANT TRUNCATE ON orders TO ${other}; GRANT TRIGGER ON orders TO ${db.config.roles.app}`);
  const found = await driftOf(db);
  t.deepEqual(lines(found), ['error LBMT_DRIFT_GRANT_WIDENED public.orders', 'error LBMT_DRIFT_GRANT_WIDENED public.orders']);
  t.true(found.some((f) => /^\S+_other was granted TRUNCATE, .*: TRUNCATE is not subject to RLS/.test(f.message)));
  t.true(found.some((f) => /was granted TRIGGER, .*sees every tenant's writes/.test(f.message)));
  for (const finding of found) await applyFix(db, finding);
  t.deepEqual(await driftOf(db), []);
});

test("the recorded and the live expressions read alike whatever the session's search_path", async (t) => {
  const { db } = await database(t, { migrate: false });
  // A policy calling a function of public: pg_get_expr names it `public.f()` when public is not on
  // the path, `f()` when it is. The state function pins its path, so the two never disagree.
  await db.superQuery(`CREATE FUNCTION public.visible_item(text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT $1 <> 'hidden' $$`);
  await migrateFiles({ databaseUrl: db.superUrl, files: generateRlsSql(db.config) });
  await db.superQuery(`CREATE POLICY visible ON orders AS RESTRICTIVE FOR SELECT TO PUBLIC USING (visible_item(item));
    SET search_path = public; SELECT linkbay.record_table_state('orders')`);
  await db.superQuery(`ALTER ROLE ${db.config.roles.app} SET search_path = pg_catalog`);
  const elsewhere = db.pool(db.appUrl, { max: 1 });
  t.is((await elsewhere.query('SHOW search_path')).rows[0].search_path, 'pg_catalog');
  t.deepEqual(drift(await checkPosture(elsewhere, db.config)), []);
  const { rows } = await db.superQuery(`SELECT state #>> '{policies,visible,using}' AS using FROM linkbay.policy_manifest`);
  t.is(rows[0].using, 'public.visible_item(item)');
});

test('a doctor role that may not read the manifest is told so once, with the grants that let it', async (t) => {
  const { db, role } = await database(t);
  const auditor = await role('auditor', `LOGIN PASSWORD 'lbmt-test'`);
  // No USAGE on the schema either: the posture checks look the library's objects up in the catalog.
  const pool = db.pool(db.superUrl.replace(/\/\/[^@]+@/, `//${auditor}:lbmt-test@`), { max: 1 });
  const report = await checkPosture(pool, db.config);
  const found = drift(report);
  t.deepEqual(lines(found), ['info LBMT_DRIFT_NO_MANIFEST table linkbay.policy_manifest']);
  t.regex(found[0]!.message, new RegExp(`^${auditor} may not read it`));
  await applyFix(db, found[0]!);
  t.deepEqual(drift(await checkPosture(pool, db.config)), [], 'the suggested grants let it check');
});
