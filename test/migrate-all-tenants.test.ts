import test from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateRlsSql, migrateAllTenants, redactUrl, tenantMigrationUrl } from '../src/index.js';
import { main } from '../src/cli.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA, withUrl, type TestDatabase } from './helpers/db.js';

test('tenantMigrationUrl: host, port and database of the tenant URL; user, password and parameters of the migrator URL', (t) => {
  t.is(
    tenantMigrationUrl('postgres://app_user:app-pw@db-eu-2.internal:6543/tenants_eu?options=-c%20role%3Dx', 'postgres://migrator:s3cret@db-main:5432/app?sslmode=require'),
    'postgres://migrator:s3cret@db-eu-2.internal:6543/tenants_eu?sslmode=require',
  );
  t.is(tenantMigrationUrl('postgres://app_user@10.0.0.7/t1', 'postgres://postgres@127.0.0.1:5433/main'), 'postgres://postgres@10.0.0.7/t1');
});

/** A shared database (migrated: 00001-00003) whose registry names two tenant databases (one of them under two users), the shared one, a deleted tenant's and a missing one. */
async function registryWithTenantDatabases(t: { teardown(fn: () => Promise<unknown>): void }) {
  const [shared, own, other] = await Promise.all([
    createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } }),
    createTestDatabase({ schema: ORDERS_SCHEMA, migrate: false }),
    createTestDatabase({ schema: ORDERS_SCHEMA, migrate: false }),
  ]);
  // The tenant databases first: the shared database's roles own objects in them.
  t.teardown(async () => {
    await Promise.all([own.drop(), other.drop()]);
    await shared.drop();
  });
  const missing = withUrl(other.appUrl, { database: `${other.name}_missing` });
  const rows: Array<[string, string, string]> = [
    ['x', own.appUrl, 'active'],
    ['y', own.ownerUrl, 'active'], // the same database under another user: migrated once
    ['w', other.appUrl, 'suspended'], // suspended tenants keep their database: migrated
    ['s', shared.appUrl, 'active'], // the shared database itself: already migrated first
    ['d', withUrl(own.appUrl, { database: `${own.name}_gone` }), 'deleted'], // not migrated
    ['m', missing, 'active'], // fails, and does not stop the others
  ];
  for (const [slug, url, status] of rows) {
    await shared.superQuery(`INSERT INTO linkbay.tenants (id, slug, name, database_url, status) VALUES ($1, $2, $2, $3, $4)`, [newTenantId(), slug, url, status]);
  }
  const dir = await mkdtemp(join(tmpdir(), 'lbmt-all-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // The migrations of every database: those the shared one was created with, and one more.
  const generated = generateRlsSql(shared.config);
  for (const file of generated) await writeFile(join(dir, file.name), file.sql);
  // Numbered after the generated files, as a user's next migration would be.
  const widgets = `${String(generated.length + 1).padStart(5, '0')}-widgets.sql`;
  await writeFile(join(dir, widgets), 'CREATE TABLE widgets (id int);');
  return { shared, own, other, missing, dir, files: [...generated.map((f) => f.name), widgets] };
}

const hasWidgets = async (db: TestDatabase) => (await db.superQuery(`SELECT to_regclass('public.widgets') IS NOT NULL AS there`)).rows[0].there as boolean;
const appliedCount = async (db: TestDatabase) => (await db.superQuery('SELECT count(*)::int AS n FROM atdatabases_migrations_applied')).rows[0].n as number;

test('migrate --all-tenants migrates the shared and every tenant database once, as the migrating role, and reports each', async (t) => {
  const { shared, own, other, missing, dir, files } = await registryWithTenantDatabases(t);
  const out: string[] = [];
  const code = await main(['migrate', '--database-url', shared.superUrl, '--dir', dir, '--all-tenants'], (s) => out.push(s), (s) => out.push(s));
  t.log(out.join('\n'));
  t.is(code, 1, 'one database failed');
  for (const db of [shared, own, other]) {
    t.true(await hasWidgets(db), db.name);
    t.is(await appliedCount(db), files.length, `${db.name}: each migration applied once`);
  }
  const progress = out.filter((l) => l.startsWith('['));
  t.is(progress.length, 4, 'shared, own, other and the missing one: one line each');
  t.deepEqual(out.filter((l) => !l.startsWith('[')), [
    '4 database(s): 3 migrated, 0 up to date, 1 failed, 0 skipped',
    `  failed: ${redactUrl(tenantMigrationUrl(missing, shared.superUrl))}: database "${new URL(missing).pathname.slice(1)}" does not exist`,
  ]);
  const line = (db: string) => progress.filter((l) => l.includes(`/${db}`) && !l.includes(`/${db}_`));
  t.deepEqual(line(shared.name), [`[1/4] ${shared.superUrl.replace(/:[^:@/]+@/, ':***@')}: 1 applied (${files.at(-1)})`]);
  for (const db of [own, other]) {
    t.is(line(db.name).length, 1, db.name);
    t.true(line(db.name)[0]!.endsWith(`: ${files.length} applied (${files.join(', ')})`), line(db.name)[0]);
    t.true(files.some((f) => /^\d{5}-manifest-public-orders\.sql$/.test(f)), 'the manifest is recorded in tenant databases too');
    t.regex(line(db.name)[0]!, new RegExp(`^\\[\\d/4\\] postgres://${new URL(shared.superUrl).username}(:\\*\\*\\*)?@`), 'as the migrating role, not the app role');
  }
  const failed = progress.filter((l) => l.includes('FAILED'));
  t.is(failed.length, 1);
  t.true(failed[0]!.includes(new URL(missing).pathname));
  t.false(out.some((l) => l.includes('_gone')), "a deleted tenant's database is left alone");
  t.false(out.some((l) => l.includes('lbmt-test') || /:[^:@/*]+@/.test(l.replace(/^[a-z]+:\/\//, ''))), 'no password in the output');

  // Once the missing database is out of the registry, a second run finds nothing to do.
  await shared.superQuery(`UPDATE linkbay.tenants SET status = 'deleted' WHERE slug = 'm'`);
  out.length = 0;
  t.is(await main(['migrate', '--database-url', shared.superUrl, '--dir', dir, '--all-tenants'], (s) => out.push(s), (s) => out.push(s)), 0);
  t.is(out.filter((l) => l.startsWith('[')).length, 3);
  t.true(out.filter((l) => l.startsWith('[')).every((l) => l.endsWith(': up to date')), out.join('\n'));
  t.is(out.at(-1), '3 database(s): 0 migrated, 3 up to date, 0 failed, 0 skipped');
});

test('migrateAllTenants: tenantMigrationUrl chooses the URL of each tenant database, and a database is migrated once', async (t) => {
  const { shared, own, other, dir } = await registryWithTenantDatabases(t);
  const asked: string[] = [];
  // Every tenant URL mapped to `other`: it is migrated once, `own` not at all.
  const { results } = await migrateAllTenants({
    databaseUrl: shared.superUrl,
    directory: dir,
    tenantMigrationUrl: (tenantUrl) => {
      asked.push(tenantUrl);
      return other.superUrl;
    },
  });
  t.deepEqual(asked.sort(), [own.appUrl, own.ownerUrl, other.appUrl, shared.appUrl, withUrl(other.appUrl, { database: `${other.name}_missing` })].sort());
  t.is(results.length, 2, 'the shared database and `other`');
  t.false(results.some((r) => r.status === 'failed'));
  t.true(await hasWidgets(other));
  t.false(await hasWidgets(own));
});

test('migrateAllTenants sends the migrator credentials only to its own server and the `servers` listed: a registry URL elsewhere is failed, not connected to', async (t) => {
  const { shared, own, dir } = await registryWithTenantDatabases(t);
  // A tenant URL someone with the admin API pointed at a server of their own.
  let connected = 0;
  const listener = createServer((socket) => {
    connected += 1;
    socket.destroy();
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => listener.close(() => resolve())));
  const port = (listener.address() as AddressInfo).port;
  const elsewhere = new URL(own.appUrl);
  elsewhere.hostname = '127.0.0.1';
  elsewhere.port = String(port);
  await shared.superQuery(`INSERT INTO linkbay.tenants (id, slug, name, database_url) VALUES ($1, 'elsewhere', 'Elsewhere', $2)`, [newTenantId(), elsewhere.toString()]);
  const first = await migrateAllTenants({ databaseUrl: shared.superUrl, directory: dir });
  const refused = first.results.find((r) => r.database.includes(`:${port}/`));
  t.like(refused, { status: 'failed' });
  t.regex((refused as { error?: Error }).error?.message ?? "", /is not among the servers the migrator's credentials may be sent to/);
  t.is(connected, 0, 'nothing connected to that server');
  t.true(await hasWidgets(own), 'the others were migrated');
  // Listed: now it is tried (and fails there, the listener being no PostgreSQL).
  const listed = await migrateAllTenants({ databaseUrl: shared.superUrl, directory: dir, servers: [`127.0.0.1:${port}`] });
  t.like(listed.results.find((r) => r.database.includes(`:${port}/`)), { status: 'failed' });
  t.true(connected > 0, 'a listed server is connected to');
  await t.throwsAsync(migrateAllTenants({ databaseUrl: shared.superUrl, directory: dir, servers: ['not a server'] }), { instanceOf: TypeError });
});
