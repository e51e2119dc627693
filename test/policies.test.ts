import test from 'ava';
import pg from 'pg';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkPosture, defineTenancy, generateRlsSql, migrate, migrateFiles, tenantQuery, TenantIsolationError } from '../src/index.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA } from './helpers/db.js';

const config = defineTenancy({ tables: ['orders', { name: 'billing.invoices', tenantColumn: 'org_id' }] });

test('generated migrations are named for @databases/pg-migrations and deterministic', (t) => {
  const files = generateRlsSql(config);
  t.deepEqual(
    files.map((f) => f.name),
    [
      '00001-roles.sql', '00002-linkbay-tenants.sql', '00003-linkbay-tenant-moves.sql', '00004-linkbay-tenant-lifecycle.sql', '00005-linkbay-policy-manifest.sql', '00006-linkbay-audit-commit-order.sql',
      '00007-rls-public-orders.sql', '00008-manifest-public-orders.sql', '00009-rls-billing-invoices.sql', '00010-manifest-billing-invoices.sql',
    ],
  );
  for (const file of files) t.regex(file.name, /^\d{5}-[a-z0-9-]+\.sql$/);
  t.deepEqual(generateRlsSql(config), files);
  t.deepEqual(
    generateRlsSql(config, { startIndex: 40, includeRegistry: false }).map((f) => f.name),
    ['00040-roles.sql', '00041-rls-public-orders.sql', '00042-rls-billing-invoices.sql'],
  );
});

test('adding a table appends its files (rls and manifest) and leaves the earlier ones unchanged', (t) => {
  const before = generateRlsSql(defineTenancy({ tables: ['orders'] }));
  const after = generateRlsSql(defineTenancy({ tables: ['orders', 'customers'] }));
  t.deepEqual(after.slice(0, before.length), before);
  t.deepEqual(after.slice(before.length).map((f) => f.name), ['00009-rls-public-customers.sql', '00010-manifest-public-customers.sql']);
});

test('the isolation policy is restrictive, checks writes and fails closed', (t) => {
  const sql = generateRlsSql(config).find((f) => f.name.includes('orders'))!.sql;
  t.regex(sql, /ENABLE ROW LEVEL SECURITY/);
  t.regex(sql, /FORCE ROW LEVEL SECURITY/);
  t.regex(sql, /AS RESTRICTIVE FOR ALL TO PUBLIC\s+USING \("tenant_id" = NULLIF\(current_setting\('app.tenant_id', true\), ''\)::uuid\)\s+WITH CHECK \("tenant_id" = NULLIF/);
  const initplan = generateRlsSql(defineTenancy({ tables: ['orders'], policyForm: 'initplan' })).find((f) => f.name.endsWith('-rls-public-orders.sql'))!.sql;
  t.regex(initplan, /USING \("tenant_id" = \(SELECT NULLIF\(current_setting\('app.tenant_id', true\), ''\)::uuid\)\)/);
  const invoices = generateRlsSql(config).find((f) => f.name.endsWith('-rls-billing-invoices.sql'))!.sql;
  t.regex(invoices, /"billing"."invoices"/);
  t.regex(invoices, /USING \("org_id" =/);
});

test('every generated file can run twice: the second run changes nothing', async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  t.teardown(() => db.drop());
  const snapshot = async () =>
    (
      await db.superQuery(`
        SELECT (SELECT json_agg(p ORDER BY policyname) FROM pg_policies p WHERE tablename = 'orders') AS policies,
               (SELECT json_agg(indexname ORDER BY indexname) FROM pg_indexes WHERE tablename = 'orders') AS indexes,
               (SELECT json_agg(json_build_array(rolname, rolsuper, rolbypassrls, rolcanlogin) ORDER BY rolname)
                  FROM pg_roles WHERE rolname LIKE $1) AS roles,
               (SELECT relforcerowsecurity AND relrowsecurity FROM pg_class WHERE oid = 'orders'::regclass) AS forced`,
        [`t%${db.name.slice(-10)}%`],
      )
    ).rows[0];
  const first = await snapshot();
  for (const file of generateRlsSql(db.config)) await db.superQuery(file.sql);
  t.deepEqual(await snapshot(), first);
  t.true(first.forced);
  t.is(first.policies.length, 2);
  t.true(first.indexes.some((name: string) => name.includes('tenant_id')) || first.indexes.includes('orders_pkey'));
});

test('an index led by the tenant column is created only when none exists', async (t) => {
  const db = await createTestDatabase({
    schema: `CREATE TABLE notes (id bigint PRIMARY KEY, tenant_id uuid NOT NULL, body text);
             CREATE TABLE events (tenant_id uuid NOT NULL, at timestamptz NOT NULL);
             CREATE INDEX events_by_tenant_time ON events (tenant_id, at);`,
    tenancy: { tables: ['notes', 'events'] },
  });
  t.teardown(() => db.drop());
  const { rows } = await db.superQuery(`SELECT tablename, indexname FROM pg_indexes WHERE tablename IN ('notes', 'events') ORDER BY 1, 2`);
  t.deepEqual(rows, [
    { tablename: 'events', indexname: 'events_by_tenant_time' },
    { tablename: 'notes', indexname: 'notes_pkey' },
    { tablename: 'notes', indexname: 'notes_tenant_id_lbmt_idx' },
  ]);
});

test('partitions get the same protection: querying a partition directly is isolated too', async (t) => {
  const db = await createTestDatabase({
    schema: `CREATE TABLE events (tenant_id uuid NOT NULL, at date NOT NULL, body text) PARTITION BY RANGE (at);
             CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
             CREATE TABLE events_2027 PARTITION OF events FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')
               PARTITION BY RANGE (at);
             CREATE TABLE events_2027_h1 PARTITION OF events_2027 FOR VALUES FROM ('2027-01-01') TO ('2027-07-01');`,
    tenancy: { tables: ['events'] },
  });
  t.teardown(() => db.drop());
  const [a, b] = [newTenantId(), newTenantId()];
  await db.superQuery(`INSERT INTO events VALUES ($1, '2026-05-01', 'a'), ($1, '2027-02-01', 'a2'), ($2, '2026-05-01', 'b'), ($2, '2027-02-01', 'b2')`, [a, b]);
  // Each partition with a date inside its range: a refusal can only come from the policy.
  const partitions: Array<[string, string, string[]]> = [
    ['events_2026', '2026-03-01', ['a']],
    ['events_2027', '2027-03-01', ['a2']],
    ['events_2027_h1', '2027-03-01', ['a2']],
  ];
  for (const [partition, inRange, own] of partitions) {
    t.is((await db.appPool.query(`SELECT * FROM ${partition}`)).rowCount, 0, `${partition} without a tenant`);
    const rows = await tenantQuery(db.appPool, a, `SELECT body FROM ${partition} ORDER BY body`);
    t.deepEqual(rows.rows.map((r) => r.body), own, `${partition}: a's rows and no other`);
    const forged = await t.throwsAsync(tenantQuery(db.appPool, a, `INSERT INTO ${partition} VALUES ($1, $2, 'forged')`, [b, inRange]), { instanceOf: TenantIsolationError }, partition);
    t.is((forged?.cause as { code?: string } | undefined)?.code, '42501', partition);
    // The same row for the tenant itself is accepted there: the date was in range.
    t.is((await tenantQuery(db.appPool, a, `INSERT INTO ${partition} VALUES ($1, $2, 'own')`, [a, inRange])).rowCount, 1, partition);
    await tenantQuery(db.appPool, a, `DELETE FROM ${partition} WHERE body = 'own'`);
  }
  t.is((await db.superQuery(`SELECT count(*)::int AS n FROM events WHERE body = 'forged'`)).rows[0].n, 0);
  const report = await checkPosture(db.appPool, db.config);
  t.deepEqual(report.findings.filter((f) => f.code === 'LBMT_PARTITION_UNPROTECTED'), []);
});

test('the roles are asserted: a runtime role given BYPASSRLS by hand is corrected on the next run', async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  t.teardown(() => db.drop());
  await db.superQuery(`ALTER ROLE ${db.config.roles.app} BYPASSRLS`);
  await db.superQuery(generateRlsSql(db.config)[0]!.sql);
  const { rows } = await db.superQuery('SELECT rolbypassrls, rolsuper FROM pg_roles WHERE rolname = $1', [db.config.roles.app]);
  t.deepEqual(rows[0], { rolbypassrls: false, rolsuper: false });
  const admin = await db.superQuery('SELECT rolbypassrls FROM pg_roles WHERE rolname = $1', [db.config.roles.admin]);
  t.true(admin.rows[0].rolbypassrls);
});

test('the roles file of two databases of one server migrated at once: neither waits for the other nor fails (roles are the server\'s)', async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  t.teardown(() => db.drop());
  const roles = generateRlsSql(db.config)[0]!.sql;
  const [a, b] = [new pg.Client({ connectionString: db.superUrl }), new pg.Client({ connectionString: db.superUrl })];
  await a.connect();
  await b.connect();
  t.teardown(async () => {
    await a.end();
    await b.end();
  });
  // A migration of one database holds its transaction open with the roles file applied...
  await a.query('BEGIN');
  await a.query(roles);
  // ...while another database's migration applies the same file: the roles are right, so nothing is
  // updated, and it neither waits for the first (an ALTER ROLE would) nor fails once it commits
  // ("tuple concurrently updated", XX000). A lock_timeout turns a wait into a failure here.
  await b.query('BEGIN');
  await b.query("SET LOCAL lock_timeout = '2s'");
  await b.query(roles);
  await a.query('COMMIT');
  await b.query('COMMIT');
  // A role whose attribute is wrong is still corrected (the next test), and a role missing is created.
  await db.superQuery(`ALTER ROLE ${db.config.roles.app} CREATEDB`);
  await db.superQuery(roles);
  t.deepEqual((await db.superQuery('SELECT rolcreatedb FROM pg_roles WHERE rolname = $1', [db.config.roles.app])).rows, [{ rolcreatedb: false }]);
});

test('the tenants registry is readable by the app role and writable only by the admin role', async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  t.teardown(() => db.drop());
  const id = newTenantId();
  await db.adminPool.query(`INSERT INTO linkbay.tenants (id, slug, name) VALUES ($1, 'acme', 'Acme')`, [id]);
  const { rows } = await db.appPool.query('SELECT slug, status FROM linkbay.tenants WHERE id = $1', [id]);
  t.deepEqual(rows, [{ slug: 'acme', status: 'active' }]);
  const denied = await t.throwsAsync<pg.DatabaseError>(db.appPool.query(`UPDATE linkbay.tenants SET status = 'active'`));
  t.is(denied?.code, '42501');
  const badSlug = await t.throwsAsync<pg.DatabaseError>(db.adminPool.query(`INSERT INTO linkbay.tenants (slug, name) VALUES ('Not A Slug', 'x')`));
  t.is(badSlug?.code, '23514');
});

test('two migrations at once both succeed and apply each migration once', async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] }, migrate: false });
  t.teardown(() => db.drop());
  // A slow migration widens the window in which two unlocked runs would collide.
  const files = [
    ...generateRlsSql(db.config),
    { name: '00010-slow.sql', sql: `SELECT pg_sleep(0.3); CREATE TABLE once_only (x int);` },
  ];
  const [one, two] = await Promise.all([migrateFiles({ databaseUrl: db.superUrl, files }), migrateFiles({ databaseUrl: db.superUrl, files })]);
  t.is(one.applied.length + two.applied.length, files.length, 'every migration applied exactly once in total');
  t.true(one.applied.length === 0 || two.applied.length === 0, 'one run did it all, the other waited and found nothing to do');
  const { rows } = await db.superQuery(`SELECT count(*)::int AS n FROM atdatabases_migrations_applied WHERE NOT obsolete`);
  t.is(rows[0].n, files.length);
  const a = newTenantId();
  await tenantQuery(db.appPool, a, `INSERT INTO orders (tenant_id, item) VALUES ($1, 'ok')`, [a]);
  t.is((await tenantQuery(db.appPool, a, 'SELECT * FROM orders')).rowCount, 1);
});

test('migrate reports a failing migration and leaves the lock free', async (t) => {
  const db = await createTestDatabase({ migrate: false });
  const dir = await mkdtemp(join(tmpdir(), 'lbmt-bad-'));
  t.teardown(async () => {
    await rm(dir, { recursive: true, force: true });
    await db.drop();
  });
  const { writeFile } = await import('node:fs/promises');
  await writeFile(join(dir, '00001-broken.sql'), 'CREATE TABLE broken (');
  await t.throwsAsync(migrate({ databaseUrl: db.superUrl, directory: dir }));
  await writeFile(join(dir, '00001-broken.sql'), 'CREATE TABLE fixed (x int);');
  const result = await migrate({ databaseUrl: db.superUrl, directory: dir });
  t.deepEqual(result.applied, ['00001-broken.sql']);
});
