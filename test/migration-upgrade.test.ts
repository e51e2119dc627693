import test from 'ava';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkPosture, defineTenancy, generateRlsSql, migrate, migrateFiles, TenantAdminService } from '../src/index.js';
import { generateRlsSqlFrom } from '../src/policies.js';
import { appendAfterExisting } from '../src/migration-numbering.js';
import { main } from '../src/cli.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA } from './helpers/db.js';
import { until } from './helpers/until.js';

// The library's sql/ as released before the tenant-moves migration (commit f111b3f), frozen.
const PREVIOUS_SQL = fileURLToPath(new URL('./fixtures/library-sql-f111b3f/', import.meta.url));
// And before the tenant-lifecycle migration (commit 411d4d9: tenants, tenant-moves, policy-manifest), frozen.
const BEFORE_LIFECYCLE_SQL = fileURLToPath(new URL('./fixtures/library-sql-411d4d9/', import.meta.url));
// And before the audit log's commit order (commit e6caa40: tenants, tenant-moves, tenant-lifecycle, policy-manifest), frozen.
const BEFORE_COMMIT_ORDER_SQL = fileURLToPath(new URL('./fixtures/library-sql-e6caa40/', import.meta.url));

/** Catalog objects of the library's schema and the tenant table: what an upgrade may only add to. */
async function catalog(db: Awaited<ReturnType<typeof createTestDatabase>>) {
  const { rows } = await db.superQuery(`
    SELECT (SELECT json_agg(c.relname || ':' || c.relkind::text ORDER BY c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'linkbay') AS relations,
           (SELECT json_agg(a.attrelid::regclass::text || '.' || a.attname || ':' || format_type(a.atttypid, a.atttypmod) ORDER BY 1)
              FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'linkbay' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
           (SELECT json_agg(policyname || ':' || qual ORDER BY policyname) FROM pg_policies WHERE tablename = 'orders') AS policies`);
  return rows[0] as { relations: string[]; columns: string[]; policies: string[] };
}

test('a database migrated with the previous version upgrades by appending the new library migration', async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] }, migrate: false });
  t.teardown(() => db.drop());
  const previous = generateRlsSqlFrom(PREVIOUS_SQL, db.config);
  t.deepEqual(previous.map((f) => f.name), ['00001-roles.sql', '00002-linkbay-tenants.sql', '00003-rls-public-orders.sql']);
  t.is((await migrateFiles({ databaseUrl: db.superUrl, files: previous })).applied.length, 3);
  const id = newTenantId();
  await db.adminPool.query(`INSERT INTO linkbay.tenants (id, slug, name) VALUES ($1, 'acme', 'Acme')`, [id]);
  const before = await catalog(db);

  // Straight from generateRlsSql the new file sits before the table file, which would renumber an
  // applied migration: @databases/pg-migrations refuses that. This is what the numbering scheme avoids.
  const dir = await mkdtemp(join(tmpdir(), 'lbmt-upgrade-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  for (const file of generateRlsSql(db.config)) await writeFile(join(dir, file.name), file.sql);
  const refused = await t.throwsAsync(migrate({ databaseUrl: db.superUrl, directory: dir }));
  t.regex(String(refused?.message), /edited|order|does not match|Migration/i);

  // Before the upgrade doctor has no manifest to compare with: said once, not a failure.
  const drift = async () => (await checkPosture(db.appPool, db.config)).findings.filter((f) => f.code.startsWith('LBMT_DRIFT_')).map((f) => `${f.severity} ${f.code} ${f.object}`);
  t.deepEqual(await drift(), ['info LBMT_DRIFT_NO_MANIFEST table linkbay.policy_manifest']);

  // Numbered after what is applied: the applied files keep their number and bytes, the new ones
  // follow; the table migrated by the previous version gets its manifest recorded by the last.
  const upgraded = await migrateFiles({ databaseUrl: db.superUrl, files: generateRlsSql(db.config) });
  t.deepEqual(upgraded.applied, ['00004-linkbay-tenant-moves.sql', '00005-linkbay-tenant-lifecycle.sql', '00006-linkbay-policy-manifest.sql', '00007-linkbay-audit-commit-order.sql', '00008-manifest-public-orders.sql']);
  const manifest = await db.superQuery(`SELECT table_name FROM linkbay.policy_manifest`);
  t.deepEqual(manifest.rows, [{ table_name: 'public.orders' }]);
  t.deepEqual(await drift(), [], 'the upgraded database reports no drift');
  await db.superQuery('ALTER TABLE orders DISABLE ROW LEVEL SECURITY');
  t.deepEqual(await drift(), ['error LBMT_DRIFT_RLS_DISABLED public.orders'], 'and drift on it is seen');
  await db.superQuery('ALTER TABLE orders ENABLE ROW LEVEL SECURITY');
  const after = await catalog(db);
  for (const relation of before.relations) t.true(after.relations.includes(relation), `${relation} kept`);
  for (const column of before.columns) t.true(after.columns.includes(column), `${column} kept`);
  t.deepEqual(after.policies, before.policies);
  t.true(after.relations.includes('tenant_moves:r'));
  t.true(after.relations.includes('policy_manifest:r'));
  // The registry's rows survive and the new table works against them.
  const { rows } = await db.adminPool.query(
    `INSERT INTO linkbay.tenant_moves (moved_tenant_id, target, previous_status) VALUES ($1, 'eu', 'active') RETURNING step, state`,
    [id],
  );
  t.deepEqual(rows, [{ step: 'created', state: 'running' }]);
  // And again: nothing left to apply.
  t.deepEqual((await migrateFiles({ databaseUrl: db.superUrl, files: generateRlsSql(db.config) })).applied, []);
});

test('the CLI regenerating into the previous directory appends, and a table added later follows', async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA + 'CREATE TABLE notes (tenant_id uuid NOT NULL, body text);', tenancy: { tables: ['orders'] }, migrate: false });
  const dir = await mkdtemp(join(tmpdir(), 'lbmt-upgrade-cli-'));
  t.teardown(async () => {
    await rm(dir, { recursive: true, force: true });
    await db.drop();
  });
  const migrations = join(dir, 'migrations');
  const { mkdir } = await import('node:fs/promises');
  await mkdir(migrations);
  for (const file of generateRlsSqlFrom(PREVIOUS_SQL, db.config)) await writeFile(join(migrations, file.name), file.sql);
  const quiet = () => undefined;
  t.is(await main(['migrate', '--database-url', db.superUrl, '--dir', migrations], quiet, quiet), 0);
  const previousBytes = await Promise.all((await readdir(migrations)).sort().map((name) => readFile(join(migrations, name), 'utf8')));

  const configFile = join(dir, 'multitenant.config.json');
  await writeFile(configFile, JSON.stringify({ roles: db.config.roles, tables: ['orders'] }));
  t.is(await main(['generate', '--config', configFile, '--out', migrations], quiet, quiet), 0);
  t.deepEqual((await readdir(migrations)).sort(), [
    '00001-roles.sql', '00002-linkbay-tenants.sql', '00003-rls-public-orders.sql', '00004-linkbay-tenant-moves.sql', '00005-linkbay-tenant-lifecycle.sql',
    '00006-linkbay-policy-manifest.sql', '00007-linkbay-audit-commit-order.sql', '00008-manifest-public-orders.sql',
  ]);
  const names = (await readdir(migrations)).sort();
  for (const [i, bytes] of previousBytes.entries()) t.is(await readFile(join(migrations, names[i]!), 'utf8'), bytes, `${names[i]} unchanged`);
  const out: string[] = [];
  t.is(await main(['migrate', '--database-url', db.superUrl, '--dir', migrations], (s) => out.push(s), quiet), 0);
  t.deepEqual(out, [
    'applied 00004-linkbay-tenant-moves.sql', 'applied 00005-linkbay-tenant-lifecycle.sql', 'applied 00006-linkbay-policy-manifest.sql', 'applied 00007-linkbay-audit-commit-order.sql',
    'applied 00008-manifest-public-orders.sql', '5 migration(s) applied',
  ]);

  // A file already there that differs from this version's output is kept, and said so.
  const said: string[] = [];
  await writeFile(join(migrations, '00003-rls-public-orders.sql'), previousBytes[2] + '-- edited by hand\n');
  t.is(await main(['generate', '--config', configFile, '--out', migrations], (s) => said.push(s), quiet), 0);
  t.true(said.some((line) => /^kept .*00003-rls-public-orders\.sql: it differs/.test(line)));
  t.is(await readFile(join(migrations, '00003-rls-public-orders.sql'), 'utf8'), previousBytes[2] + '-- edited by hand\n');
  await writeFile(join(migrations, '00003-rls-public-orders.sql'), previousBytes[2]!);

  // A table added after the upgrade comes after the library's file, not before it.
  await writeFile(configFile, JSON.stringify({ roles: db.config.roles, tables: ['orders', 'notes'] }));
  t.is(await main(['generate', '--config', configFile, '--out', migrations], quiet, quiet), 0);
  t.deepEqual((await readdir(migrations)).sort().slice(8), ['00009-rls-public-notes.sql', '00010-manifest-public-notes.sql']);
  out.length = 0;
  t.is(await main(['migrate', '--database-url', db.superUrl, '--dir', migrations], (s) => out.push(s), quiet), 0);
  t.deepEqual(out, ['applied 00009-rls-public-notes.sql', 'applied 00010-manifest-public-notes.sql', '2 migration(s) applied']);
  const recorded = await db.superQuery(`SELECT table_name FROM linkbay.policy_manifest ORDER BY 1`);
  t.deepEqual(recorded.rows.map((r) => r.table_name), ['public.notes', 'public.orders']);
});

test('appendAfterExisting keeps existing numbers, appends the rest in order, and respects startIndex', (t) => {
  const files = generateRlsSql(defineTenancy({ tables: ['orders', 'notes'] }));
  t.deepEqual(appendAfterExisting(files, []), files, 'no existing files: the canonical numbering');
  const names = appendAfterExisting(files, ['00001-roles.sql', '00002-linkbay-tenants.sql', '00003-rls-public-orders.sql', '00007-my-own.sql']).map((f) => f.name);
  t.deepEqual(names, [
    '00001-roles.sql', '00002-linkbay-tenants.sql', '00003-rls-public-orders.sql', '00008-linkbay-tenant-moves.sql', '00009-linkbay-tenant-lifecycle.sql',
    '00010-linkbay-policy-manifest.sql', '00011-linkbay-audit-commit-order.sql', '00012-manifest-public-orders.sql', '00013-rls-public-notes.sql', '00014-manifest-public-notes.sql',
  ]);
  const later = generateRlsSql(defineTenancy({ tables: ['orders'] }), { startIndex: 40, only: 'tables', existing: [] });
  t.deepEqual(later.map((f) => f.name), ['00040-rls-public-orders.sql', '00041-manifest-public-orders.sql']);
});

test('a database of the version before the lifecycle migration upgrades: provisioning allowed, the audit log added, rows kept', async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] }, migrate: false });
  t.teardown(() => db.drop());
  const previous = generateRlsSqlFrom(BEFORE_LIFECYCLE_SQL, db.config);
  t.deepEqual(previous.map((f) => f.name), [
    '00001-roles.sql', '00002-linkbay-tenants.sql', '00003-linkbay-tenant-moves.sql', '00004-linkbay-policy-manifest.sql', '00005-rls-public-orders.sql', '00006-manifest-public-orders.sql',
  ]);
  await migrateFiles({ databaseUrl: db.superUrl, files: previous });
  for (const status of ['active', 'suspended', 'deleted']) await db.adminPool.query(`INSERT INTO linkbay.tenants (id, slug, name, status) VALUES ($1, $2, $2, $3)`, [newTenantId(), status, status]);
  await t.throwsAsync(db.adminPool.query(`INSERT INTO linkbay.tenants (slug, name, status) VALUES ('early', 'Early', 'provisioning')`), { code: '23514' });
  // Found in the catalog, not by its name: a constraint someone renamed is replaced too.
  await db.superQuery(`ALTER TABLE linkbay.tenants RENAME CONSTRAINT tenants_status_check TO status_is_known`);
  const before = await catalog(db);

  const upgraded = await migrateFiles({ databaseUrl: db.superUrl, files: generateRlsSql(db.config) });
  t.deepEqual(upgraded.applied, ['00007-linkbay-tenant-lifecycle.sql', '00008-linkbay-audit-commit-order.sql']);
  const after = await catalog(db);
  for (const relation of before.relations) t.true(after.relations.includes(relation), `${relation} kept`);
  for (const column of before.columns) t.true(after.columns.includes(column), `${column} kept`);
  t.deepEqual(after.policies, before.policies);
  t.true(after.relations.includes('audit_log:r'));
  const checks = async () =>
    (
      await db.superQuery(
        `SELECT pg_get_constraintdef(c.oid) AS def FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)
          WHERE c.conrelid = 'linkbay.tenants'::regclass AND c.contype = 'c' AND a.attname = 'status'`,
      )
    ).rows.map((r) => r.def as string);
  const defs = await checks();
  t.is(defs.length, 1, 'one CHECK on status: the old one (renamed) was dropped');
  t.regex(defs[0]!, /'provisioning'/);
  t.deepEqual((await db.superQuery(`SELECT status FROM linkbay.tenants ORDER BY status`)).rows.map((r) => r.status), ['active', 'deleted', 'suspended']);
  await db.adminPool.query(`INSERT INTO linkbay.tenants (slug, name, status) VALUES ('early', 'Early', 'provisioning')`);
  await t.throwsAsync(db.adminPool.query(`INSERT INTO linkbay.tenants (slug, name, status) VALUES ('odd', 'Odd', 'archived')`), { code: '23514' });
  // The tenant tables' recorded state is untouched: doctor sees no drift after the upgrade.
  const drift = (await checkPosture(db.appPool, db.config)).findings.filter((f) => f.code.startsWith('LBMT_DRIFT_'));
  t.deepEqual(drift, []);

  // The file is idempotent: run again as it is, it changes nothing (and keeps the rows).
  const lifecycle = generateRlsSql(db.config).find((f) => f.name.endsWith('-linkbay-tenant-lifecycle.sql'))!;
  await db.adminPool.query(`INSERT INTO linkbay.audit_log (actor, action) VALUES ('test', 'create')`);
  await db.superQuery(lifecycle.sql);
  t.deepEqual(await checks(), defs);
  t.is((await db.superQuery(`SELECT count(*)::int AS n FROM linkbay.audit_log`)).rows[0].n, 1);
  t.deepEqual((await migrateFiles({ databaseUrl: db.superUrl, files: generateRlsSql(db.config) })).applied, []);
});

test('a database with audit rows of the version before the commit order upgrades: the rows kept, the tail serves them in id order, new rows after them', async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] }, migrate: false });
  t.teardown(() => db.drop());
  await migrateFiles({ databaseUrl: db.superUrl, files: generateRlsSqlFrom(BEFORE_COMMIT_ORDER_SQL, db.config) });
  const admin = new TenantAdminService(db.adminPool, { tenancy: db.config });
  const tenant = await admin.createTenant({ slug: 'before-upgrade', name: 'Before' });
  await admin.suspendTenant(tenant.id, { actor: 'ops:before' });
  const listed = await admin.listAudit();
  const upgraded = await migrateFiles({ databaseUrl: db.superUrl, files: generateRlsSql(db.config) });
  t.deepEqual(upgraded.applied, ['00008-linkbay-audit-commit-order.sql']);
  t.deepEqual((await admin.listAudit()).entries, listed.entries, 'the list is as it was');
  await admin.activateTenant(tenant.id, { actor: 'ops:after' });
  // The tail serves a row once every write transaction on the server that began before it has ended
  // (other test files run on this server): waited for, with a deadline.
  const tail = await until(async () => {
    const read = await admin.tailAudit();
    return read.entries.length >= 3 && read;
  }, 30_000, 'the tail to serve the three rows');
  t.deepEqual(tail.entries.map((e) => [e.action, e.actor]), [['create', 'system'], ['suspend', 'ops:before'], ['activate', 'ops:after']]);
  // Applied again (every library file is idempotent): nothing changes.
  await db.superQuery(generateRlsSql(db.config).find((f) => f.name.endsWith('-linkbay-audit-commit-order.sql'))!.sql);
  t.deepEqual((await admin.tailAudit()).entries, tail.entries);
});
