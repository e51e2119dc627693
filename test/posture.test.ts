/**
 * `doctor` against a real PostgreSQL: a freshly migrated database passes, then each test breaks it
 * one way (as the superuser, the way a careless migration would) and expects the exact finding.
 */
import test, { type ExecutionContext } from 'ava';
import { PostureError, TenantIsolationError, tenantQuery } from '../src/index.js';
import { assertPosture, checkPosture, formatPostureReport, type PostureReport, type Severity } from '../src/posture/index.js';
import type { Queryable } from '../src/posture/queries.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA, type TestDatabase } from './helpers/db.js';

// Each test database holds a few connections; PostgreSQL's default max_connections is 100, and
// other test files run at the same time. So at most this many of these databases exist at once.
const MAX_DATABASES = 6;
let databases = 0;
const waiting: Array<() => void> = [];

async function database(t: ExecutionContext, schema = ORDERS_SCHEMA, tables: string[] = ['orders']): Promise<TestDatabase> {
  if (databases < MAX_DATABASES) databases += 1;
  else await new Promise<void>((resolve) => waiting.push(resolve)); // handed over by a finished test
  t.teardown(() => {
    const next = waiting.shift();
    if (next) next();
    else databases -= 1;
  });
  const db = await createTestDatabase({ schema, tenancy: { tables } });
  t.teardown(() => db.drop());
  return db;
}

/** The doctor as the CLI runs it: connected as a superuser, checking the app role. */
function checkAsSuperuser(db: TestDatabase): Promise<PostureReport> {
  return checkPosture(db.pool(db.superUrl, { max: 1 }), db.config);
}

/** Asserts that `code` was found with `severity` (on `object`, when given) and returns those findings. */
function assertFinding(t: ExecutionContext, report: PostureReport, code: string, severity: Severity, object?: string) {
  const found = report.findings.filter((f) => f.code === code && (object === undefined || f.object === object));
  t.true(found.length > 0, `expected ${code} in ${JSON.stringify(report.findings.map((f) => `${f.code} ${f.object}`))}`);
  for (const finding of found) t.is(finding.severity, severity, `${code} severity`);
  t.is(report.ok, !report.findings.some((f) => f.severity === 'error'));
  return found;
}

/** Findings other than the server version ones (which depend on the server the tests run on). */
function schemaFindings(report: PostureReport) {
  return report.findings.filter((f) => !f.code.startsWith('LBMT_SERVER_')).map((f) => `${f.severity} ${f.code} ${f.object}`);
}

/** A pool that reports another server version and otherwise passes queries to the real one. */
function reportingVersion(pool: Queryable, versionNum: number): Queryable {
  const version = `${Math.floor(versionNum / 10000)}.${versionNum % 10000}`;
  return {
    query: (text, values) =>
      text.includes('server_version_num') ? Promise.resolve({ rows: [{ version, version_num: versionNum }] }) : pool.query(text, values),
  };
}

test('a freshly generated and migrated database has no findings, checked as the app role', async (t) => {
  const db = await database(t);
  const report = await checkPosture(db.appPool, db.config);
  t.true(report.ok);
  t.is(report.runtimeRole, db.config.roles.app);
  t.deepEqual(schemaFindings(report), []);
  const { rows } = await db.superQuery('SHOW server_version');
  t.is(report.serverVersion, rows[0].server_version);
});

test('a freshly generated and migrated database has no errors or warnings, checked as a superuser', async (t) => {
  const db = await database(t);
  const report = await checkAsSuperuser(db);
  t.true(report.ok);
  t.deepEqual(schemaFindings(report), [`info LBMT_CONNECTED_AS_OTHER_ROLE role ${db.config.roles.app}`]);
});

test('a table whose row level security is not forced is an error', async (t) => {
  const db = await database(t);
  await db.superQuery('ALTER TABLE orders NO FORCE ROW LEVEL SECURITY');
  const [finding] = assertFinding(t, await checkPosture(db.appPool, db.config), 'LBMT_RLS_NOT_FORCED', 'error', 'public.orders');
  t.is(finding!.fix, 'ALTER TABLE "public"."orders" FORCE ROW LEVEL SECURITY;');
});

test('a table with row level security disabled is an error', async (t) => {
  const db = await database(t);
  await db.superQuery('ALTER TABLE orders DISABLE ROW LEVEL SECURITY');
  assertFinding(t, await checkPosture(db.appPool, db.config), 'LBMT_RLS_DISABLED', 'error', 'public.orders');
});

test('a dropped isolation policy is an error', async (t) => {
  const db = await database(t);
  await db.superQuery('DROP POLICY lbmt_tenant_isolation ON orders');
  const report = await checkAsSuperuser(db);
  const [finding] = assertFinding(t, report, 'LBMT_ISOLATION_POLICY_MISSING', 'error', 'public.orders');
  t.regex(finding!.fix, /AS RESTRICTIVE FOR ALL/);
  t.false(report.findings.some((f) => f.code === 'LBMT_EXTRA_PERMISSIVE_POLICY'), 'lbmt_tenant_access is not an extra policy');
});

test('an isolation policy recreated as permissive is an error', async (t) => {
  const db = await database(t);
  await db.superQuery(`DROP POLICY lbmt_tenant_isolation ON orders;
    CREATE POLICY lbmt_tenant_isolation ON orders AS PERMISSIVE FOR ALL
      USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
      WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)`);
  const report = await checkPosture(db.appPool, db.config);
  assertFinding(t, report, 'LBMT_ISOLATION_POLICY_PERMISSIVE', 'error', 'public.orders');
  t.false(report.findings.some((f) => f.code === 'LBMT_ISOLATION_POLICY_MISSING'));
});

test('an isolation policy without WITH CHECK is a warning, because FOR ALL still checks writes with USING', async (t) => {
  const db = await database(t);
  await db.superQuery(`DROP POLICY lbmt_tenant_isolation ON orders;
    CREATE POLICY lbmt_tenant_isolation ON orders AS RESTRICTIVE FOR ALL
      USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)`);
  const report = await checkPosture(db.appPool, db.config);
  assertFinding(t, report, 'LBMT_ISOLATION_WITH_CHECK_MISSING', 'warning', 'public.orders');
  // The catalog checks see only a warning; the one error is drift: the policy is not as migrated.
  t.deepEqual(report.findings.filter((f) => f.severity === 'error').map((f) => f.code), ['LBMT_DRIFT_POLICY_CHANGED']);
  // Why only a warning: PostgreSQL applies USING to new rows of a FOR ALL policy.
  const [mine, theirs] = [newTenantId(), newTenantId()];
  const error = await t.throwsAsync(tenantQuery(db.appPool, mine, `INSERT INTO orders (tenant_id, item) VALUES ($1, 'x')`, [theirs]));
  t.true(error instanceof TenantIsolationError);
});

test('an isolation policy whose WITH CHECK is always true is an error', async (t) => {
  const db = await database(t);
  await db.superQuery(`ALTER POLICY lbmt_tenant_isolation ON orders WITH CHECK (true)`);
  assertFinding(t, await checkPosture(db.appPool, db.config), 'LBMT_ISOLATION_WITH_CHECK_WEAK', 'error', 'public.orders');
});

test('an isolation policy widened with OR is not recognised as isolation', async (t) => {
  const db = await database(t);
  await db.superQuery(`ALTER POLICY lbmt_tenant_isolation ON orders
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid OR current_user = 'x')`);
  assertFinding(t, await checkPosture(db.appPool, db.config), 'LBMT_ISOLATION_POLICY_MISSING', 'error', 'public.orders');
});

test('an extra permissive USING (true) policy is a warning while the restrictive isolation policy stands', async (t) => {
  const db = await database(t);
  await db.superQuery('CREATE POLICY everything ON orders AS PERMISSIVE FOR SELECT USING (true)');
  const report = await checkPosture(db.appPool, db.config);
  const [finding] = assertFinding(t, report, 'LBMT_EXTRA_PERMISSIVE_POLICY', 'warning', 'public.orders');
  t.regex(finding!.message, /everything/);
  t.true(report.ok);
});

test('an isolation policy that does not apply to the app role does not count', async (t) => {
  const db = await database(t);
  await db.superQuery(`ALTER POLICY lbmt_tenant_isolation ON orders TO ${db.config.roles.admin}`);
  assertFinding(t, await checkPosture(db.appPool, db.config), 'LBMT_ISOLATION_POLICY_MISSING', 'error', 'public.orders');
});

test('an extra permissive policy without a restrictive isolation policy is an error', async (t) => {
  const db = await database(t);
  await db.superQuery('DROP POLICY lbmt_tenant_isolation ON orders; CREATE POLICY everything ON orders AS PERMISSIVE FOR SELECT USING (true)');
  assertFinding(t, await checkPosture(db.appPool, db.config), 'LBMT_EXTRA_PERMISSIVE_POLICY', 'error', 'public.orders');
});

test('a table without any permissive policy for the app role is a warning', async (t) => {
  const db = await database(t);
  await db.superQuery('DROP POLICY lbmt_tenant_access ON orders');
  const report = await checkPosture(db.appPool, db.config);
  assertFinding(t, report, 'LBMT_NO_PERMISSIVE_POLICY', 'warning', 'public.orders');
  t.true(report.ok);
});

test('an app role with BYPASSRLS is an error, checked by the app role itself', async (t) => {
  const db = await database(t);
  await db.superQuery(`ALTER ROLE ${db.config.roles.app} BYPASSRLS`);
  assertFinding(t, await checkPosture(db.appPool, db.config), 'LBMT_ROLE_BYPASSRLS', 'error', `role ${db.config.roles.app}`);
});

test('an app role that is superuser is an error', async (t) => {
  const db = await database(t);
  await db.superQuery(`ALTER ROLE ${db.config.roles.app} SUPERUSER`);
  assertFinding(t, await checkPosture(db.appPool, db.config), 'LBMT_ROLE_SUPERUSER', 'error', `role ${db.config.roles.app}`);
});

test('an app role that is a member of a BYPASSRLS role is an error', async (t) => {
  const db = await database(t);
  await db.superQuery(`GRANT ${db.config.roles.admin} TO ${db.config.roles.app}`);
  const [finding] = assertFinding(t, await checkAsSuperuser(db), 'LBMT_ROLE_CAN_ESCALATE', 'error', `role ${db.config.roles.app}`);
  t.is(finding!.fix, `REVOKE "${db.config.roles.admin}" FROM "${db.config.roles.app}";`);
});

test('an app role that owns a tenant table is an error', async (t) => {
  const db = await database(t);
  await db.superQuery(`ALTER TABLE orders OWNER TO ${db.config.roles.app}`);
  const [finding] = assertFinding(t, await checkPosture(db.appPool, db.config), 'LBMT_ROLE_OWNS_TABLE', 'error', 'public.orders');
  t.is(finding!.fix, `ALTER TABLE "public"."orders" OWNER TO "${db.config.roles.owner}";`);
});

test('an app role that is a member of the table owner role is an error', async (t) => {
  const db = await database(t);
  await db.superQuery(`GRANT ${db.config.roles.owner} TO ${db.config.roles.app}`);
  assertFinding(t, await checkPosture(db.appPool, db.config), 'LBMT_ROLE_OWNS_TABLE', 'error', 'public.orders');
});

test('a runtime role that does not exist is an error', async (t) => {
  const db = await database(t);
  const report = await checkPosture(db.pool(db.superUrl, { max: 1 }), db.config, { runtimeRole: 'lbmt_no_such_role' });
  t.is(report.runtimeRole, 'lbmt_no_such_role');
  assertFinding(t, report, 'LBMT_ROLE_MISSING', 'error', 'role lbmt_no_such_role');
});

test('a config without tenant tables is a warning: nothing was checked (and the table it left out is an error)', async (t) => {
  const db = await database(t);
  const report = await checkPosture(db.appPool, { ...db.config, tables: [] });
  assertFinding(t, report, 'LBMT_NO_TENANT_TABLES', 'warning', 'config');
  assertFinding(t, report, 'LBMT_TENANT_TABLE_UNLISTED', 'error', '"public"."orders"');
  t.false(report.ok);
});

test('a configured table that does not exist is an error', async (t) => {
  const db = await database(t);
  const config = { ...db.config, tables: [...db.config.tables, { schema: 'public', table: 'invoices', tenantColumn: 'tenant_id' }] };
  assertFinding(t, await checkPosture(db.appPool, config), 'LBMT_TABLE_MISSING', 'error', 'public.invoices');
});

test('a tenant column of another type than the config says is an error', async (t) => {
  const db = await database(t);
  const report = await checkPosture(db.appPool, { ...db.config, tenantIdType: 'text' });
  const [finding] = assertFinding(t, report, 'LBMT_TENANT_COLUMN_TYPE', 'error', 'public.orders');
  t.regex(finding!.message, /tenant_id is uuid, the config says text/);
});

test('a nullable tenant column is a warning', async (t) => {
  const db = await database(t, `CREATE TABLE notes (tenant_id uuid, body text);`, ['notes']);
  const report = await checkPosture(db.appPool, db.config);
  assertFinding(t, report, 'LBMT_TENANT_COLUMN_NULLABLE', 'warning', 'public.notes');
  t.true(report.ok);
});

test('a view over a tenant table without security_invoker is an error, through other views too', async (t) => {
  const db = await database(t);
  await db.superQuery(`CREATE VIEW invoker_orders WITH (security_invoker = true) AS SELECT * FROM orders;
    CREATE VIEW order_items AS SELECT item FROM invoker_orders`);
  const report = await checkAsSuperuser(db);
  const [finding] = assertFinding(t, report, 'LBMT_VIEW_DEFINER_RIGHTS', 'error', 'view public.order_items');
  t.false(report.findings.some((f) => f.object === 'view public.invoker_orders'), 'a security_invoker view is fine');
  await db.superQuery(finding!.fix);
  t.false((await checkAsSuperuser(db)).findings.some((f) => f.code === 'LBMT_VIEW_DEFINER_RIGHTS'), 'the suggested fix fixes it');
});

test('a view without security_invoker is only a warning before PostgreSQL 15, where no view has it', async (t) => {
  const db = await database(t);
  await db.superQuery('CREATE VIEW all_orders AS SELECT * FROM orders');
  const report = await checkPosture(reportingVersion(db.pool(db.superUrl, { max: 1 }), 140020), db.config);
  assertFinding(t, report, 'LBMT_VIEW_DEFINER_RIGHTS', 'warning', 'view public.all_orders');
});

test('a materialized view over a tenant table is an error', async (t) => {
  const db = await database(t);
  await db.superQuery('CREATE MATERIALIZED VIEW order_counts AS SELECT tenant_id, count(*) FROM orders GROUP BY tenant_id');
  assertFinding(t, await checkPosture(db.appPool, db.config), 'LBMT_MATVIEW_OVER_TENANT_TABLE', 'error', 'materialized view public.order_counts');
});

test('a SECURITY DEFINER function reading a tenant table, owned by a role subject to RLS, is a warning, and more so without a pinned search_path', async (t) => {
  const db = await database(t);
  // Owned by the table owner, whom FORCE subjects to the policies (owned by a superuser it is an
  // error: test/doctor-attacks.test.ts).
  await db.superQuery(`
    CREATE FUNCTION count_orders() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS $$SELECT count(*) FROM orders$$;
    CREATE FUNCTION count_orders_pinned() RETURNS bigint LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
      AS 'SELECT count(*) FROM public.orders';
    CREATE FUNCTION unrelated() RETURNS text LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN RETURN 'orders_archive'; END $$;
    ALTER FUNCTION count_orders() OWNER TO ${db.config.roles.owner};
    ALTER FUNCTION count_orders_pinned() OWNER TO ${db.config.roles.owner};`);
  const report = await checkPosture(db.appPool, db.config);
  assertFinding(t, report, 'LBMT_SECURITY_DEFINER_FUNCTION', 'warning', 'function public.count_orders()');
  assertFinding(t, report, 'LBMT_SECURITY_DEFINER_SEARCH_PATH', 'warning', 'function public.count_orders()');
  assertFinding(t, report, 'LBMT_SECURITY_DEFINER_FUNCTION', 'warning', 'function public.count_orders_pinned()');
  t.false(report.findings.some((f) => f.code === 'LBMT_SECURITY_DEFINER_SEARCH_PATH' && f.object === 'function public.count_orders_pinned()'));
  t.false(report.findings.some((f) => f.object === 'function public.unrelated()'));
  t.true(report.ok);
});

test('a partition of a tenant table without its own row level security is an error until it is protected', async (t) => {
  const schema = `CREATE TABLE events (tenant_id uuid NOT NULL, at date NOT NULL, what text) PARTITION BY RANGE (at);`;
  const db = await database(t, schema, ['events']);
  await db.superQuery(`CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')`);
  const report = await checkPosture(db.appPool, db.config);
  const [finding] = assertFinding(t, report, 'LBMT_PARTITION_UNPROTECTED', 'error', 'public.events_2026');
  t.regex(finding!.message, /RLS is not enabled, RLS is not forced, it has no restrictive isolation policy/);
  t.false(report.findings.some((f) => f.object === 'public.events' && f.severity === 'error'), 'the parent itself is protected');

  await db.superQuery(finding!.fix);
  t.false((await checkPosture(db.appPool, db.config)).findings.some((f) => f.code === 'LBMT_PARTITION_UNPROTECTED'), 'the suggested fix fixes it');
});

test('a unique index without the tenant column is a warning that assertPosture lets pass', async (t) => {
  const db = await database(t);
  await db.superQuery('CREATE UNIQUE INDEX orders_item_key ON orders (item)');
  const report = await assertPosture(db.appPool, db.config);
  const [finding] = assertFinding(t, report, 'LBMT_UNIQUE_WITHOUT_TENANT', 'warning', 'public.orders unique index orders_item_key');
  t.is(finding!.fix, 'CREATE UNIQUE INDEX ON "public"."orders" ("tenant_id", "item");\nDROP INDEX "public"."orders_item_key";');
  await db.superQuery(finding!.fix);
  t.false((await checkPosture(db.appPool, db.config)).findings.some((f) => f.code === 'LBMT_UNIQUE_WITHOUT_TENANT'), 'the suggested fix fixes it');
});

test('a unique key that only INCLUDEs the tenant column, or a primary key without it, is a warning', async (t) => {
  const db = await database(t, `CREATE TABLE notes (tenant_id uuid NOT NULL, id bigint PRIMARY KEY, slug text);
    CREATE UNIQUE INDEX notes_slug_key ON notes (slug) INCLUDE (tenant_id);`, ['notes']);
  const report = await checkPosture(db.appPool, db.config);
  assertFinding(t, report, 'LBMT_UNIQUE_WITHOUT_TENANT', 'warning', 'public.notes unique index notes_slug_key');
  const [primary] = assertFinding(t, report, 'LBMT_UNIQUE_WITHOUT_TENANT', 'warning', 'public.notes constraint notes_pkey');
  t.is(primary!.fix, 'ALTER TABLE "public"."notes" DROP CONSTRAINT "notes_pkey", ADD CONSTRAINT "notes_pkey" PRIMARY KEY ("tenant_id", "id");');
  await db.superQuery(primary!.fix);
  t.false((await checkPosture(db.appPool, db.config)).findings.some((f) => f.object === 'public.notes constraint notes_pkey'));
});

test('a foreign key to a tenant table that does not match on the tenant column is a warning', async (t) => {
  const db = await database(t, `
    CREATE TABLE customers (tenant_id uuid NOT NULL, id bigint PRIMARY KEY);
    CREATE TABLE orders (tenant_id uuid NOT NULL, id bigint, customer_id bigint REFERENCES customers (id), PRIMARY KEY (tenant_id, id));
    CREATE TABLE invoices (tenant_id uuid NOT NULL, id bigint, order_id bigint, PRIMARY KEY (tenant_id, id),
      FOREIGN KEY (tenant_id, order_id) REFERENCES orders (tenant_id, id));
    CREATE TABLE shipments (tenant_id uuid NOT NULL, id bigint, origin_tenant uuid, order_id bigint, PRIMARY KEY (tenant_id, id),
      CONSTRAINT shipments_order_fkey FOREIGN KEY (origin_tenant, order_id) REFERENCES orders (tenant_id, id));
    CREATE TABLE audit (customer_id bigint REFERENCES customers (id));`, ['customers', 'orders', 'invoices', 'shipments']);
  const report = await checkPosture(db.appPool, db.config);
  assertFinding(t, report, 'LBMT_FOREIGN_KEY_WITHOUT_TENANT', 'warning', 'public.orders foreign key orders_customer_id_fkey');
  assertFinding(t, report, 'LBMT_FOREIGN_KEY_WITHOUT_TENANT', 'warning', 'public.shipments foreign key shipments_order_fkey');
  assertFinding(t, report, 'LBMT_FOREIGN_KEY_WITHOUT_TENANT', 'warning', 'public.audit foreign key audit_customer_id_fkey');
  t.false(report.findings.some((f) => f.object.startsWith('public.invoices foreign key')), 'a composite key through the tenant column is fine');
});

test('a tenant table without an index led by the tenant column is a warning', async (t) => {
  const db = await database(t, `CREATE TABLE notes (tenant_id uuid NOT NULL, body text);`, ['notes']);
  t.deepEqual(schemaFindings(await checkPosture(db.appPool, db.config)), [], 'the migration created the index');
  await db.superQuery('DROP INDEX notes_tenant_id_lbmt_idx');
  assertFinding(t, await checkPosture(db.appPool, db.config), 'LBMT_TENANT_INDEX_MISSING', 'warning', 'public.notes');
});

test('assertPosture throws PostureError listing the error findings, as the app role at start-up', async (t) => {
  const db = await database(t);
  await db.superQuery('ALTER TABLE orders NO FORCE ROW LEVEL SECURITY');
  const error = await t.throwsAsync(assertPosture(db.appPool, db.config), { instanceOf: PostureError });
  t.is(error.code, 'LBMT_POSTURE_UNSAFE');
  t.regex(error.message, /LBMT_RLS_NOT_FORCED public\.orders/);
  // The catalog check, and the drift check saying it was forced when migrated.
  t.deepEqual(error.findings.map((f) => (f as { code: string }).code), ['LBMT_RLS_NOT_FORCED', 'LBMT_DRIFT_FORCE_REMOVED']);
});

test('server versions before the RLS CVE fixes and out-of-support majors are warnings', async (t) => {
  const db = await database(t);
  const pool = db.pool(db.superUrl, { max: 1 });
  const server = async (versionNum: number) => (await checkPosture(reportingVersion(pool, versionNum), db.config)).findings.filter((f) => f.code.startsWith('LBMT_SERVER_'));

  const [v158] = await server(150008);
  t.is(v158!.code, 'LBMT_SERVER_VULNERABLE');
  t.is(v158!.severity, 'warning');
  t.regex(v158!.message, /CVE-2024-10976, CVE-2024-10978, CVE-2025-8713: row level security can apply the wrong role's policies; planner statistics/);
  t.notRegex(v158!.message, /CVE-2023-2455/);
  t.regex(v158!.fix, /at least 15\.14/);
  t.regex((await server(150002))[0]!.message, /CVE-2023-2455, CVE-2024-10976, CVE-2024-10978, CVE-2025-8713/);
  const [v159] = await server(150009);
  t.regex(v159!.message, /fixes for CVE-2025-8713: planner statistics of partitions and inheritance children/);
  t.notRegex(v159!.message, /wrong role/);
  t.deepEqual(await server(150014), []);
  t.deepEqual(await server(170006), []);
  t.deepEqual(await server(180000), [], '18.0 was released with every fix');
  t.regex((await server(170005))[0]!.fix, /at least 17\.6/);
  t.deepEqual(await server(160004).then((f) => f.map((x) => x.code)), ['LBMT_SERVER_VULNERABLE']);
  t.deepEqual((await server(130023)).map((f) => `${f.severity} ${f.code}`), ['warning LBMT_SERVER_UNSUPPORTED'], '13 ended 2025-11-13');
  t.deepEqual((await server(90624)).map((f) => f.code), ['LBMT_SERVER_VULNERABLE', 'LBMT_SERVER_UNSUPPORTED']);
});

test('formatPostureReport prints each finding with its fix, errors first, and a summary line', (t) => {
  const report: PostureReport = {
    ok: false,
    serverVersion: '18.1',
    runtimeRole: 'app_user',
    findings: [
      { code: 'LBMT_TENANT_INDEX_MISSING', severity: 'warning', object: 'public.notes', message: 'no index', fix: 'CREATE INDEX ON "public"."notes" ("tenant_id");' },
      { code: 'LBMT_RLS_NOT_FORCED', severity: 'error', object: 'public.orders', message: 'not forced', fix: 'ALTER TABLE "public"."orders" FORCE ROW LEVEL SECURITY;\n-- and more' },
    ],
  };
  const text = formatPostureReport(report);
  const lines = text.split('\n');
  t.is(lines[0], 'PostgreSQL 18.1, runtime role app_user');
  t.regex(text, /SEVERITY\s+CODE\s+OBJECT/);
  t.true(text.indexOf('LBMT_RLS_NOT_FORCED') < text.indexOf('LBMT_TENANT_INDEX_MISSING'));
  t.regex(text, /^error\s+LBMT_RLS_NOT_FORCED\s+public\.orders$/m);
  t.regex(text, /^\s+fix: ALTER TABLE "public"\."orders" FORCE ROW LEVEL SECURITY;\n\s+-- and more$/m);
  t.is(lines.at(-1), '1 error, 1 warning, 0 info: tenant isolation is BROKEN');
  t.is(formatPostureReport({ ...report, ok: true, findings: [] }).split('\n').at(-1), '0 errors, 0 warnings, 0 info: nothing found that breaks tenant isolation');
});

test('plan classes: reported (info) when linkbay.planner_tenants() is missing or the runtime role may not call it', async (t) => {
  const db = await database(t);
  const code = 'LBMT_PLAN_CLASSES_UNAVAILABLE';
  t.false((await checkPosture(db.appPool, db.config)).findings.some((f) => f.code === code), 'the generated migrations provide it');
  await db.superQuery(`REVOKE EXECUTE ON FUNCTION linkbay.planner_tenants() FROM ${db.config.roles.app}`);
  const [revoked] = assertFinding(t, await checkPosture(db.appPool, db.config), code, 'info');
  t.regex(revoked!.fix, /GRANT EXECUTE ON FUNCTION linkbay\.planner_tenants\(\)/);
  await db.superQuery('DROP FUNCTION linkbay.planner_tenants()');
  const report = await checkPosture(db.appPool, db.config);
  assertFinding(t, report, code, 'info');
  t.true(report.ok, 'slower, not unsafe');
});
