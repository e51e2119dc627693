/**
 * Migrations across a fleet: 200 tenant databases on one server, 8 at once, one broken on purpose.
 * The other 199 are migrated, the run says which failed and exits non-zero, a re-run after the fix
 * finishes it; a canary group stops a bad rollout before the rest; --stop-on-failure starts nothing
 * after a failure. Roles are cluster-wide: the generated roles file runs on many databases of one
 * server at once here, which is where PostgreSQL's "tuple concurrently updated" would show.
 */
import test from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { main } from '../src/cli.js';
import { generateRlsSql, migrateAllTenants } from '../src/index.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA, serverUrl, withUrl } from './helpers/db.js';

const FLEET = 200;

async function fleet(t: { teardown(fn: () => Promise<unknown>): void }, size: number) {
  const shared = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  const root = new pg.Client({ connectionString: serverUrl() });
  await root.connect();
  // Every tenant database has the application's tables (from a template: copied, not re-created).
  const template = `${shared.name}_template`;
  await root.query(`CREATE DATABASE ${template}`);
  const templateClient = new pg.Client({ connectionString: withUrl(serverUrl(), { database: template }) });
  await templateClient.connect();
  await templateClient.query(ORDERS_SCHEMA);
  await templateClient.end();
  const names = Array.from({ length: size }, (_, i) => `${shared.name}_t${String(i).padStart(3, '0')}`);
  for (const name of names) await root.query(`CREATE DATABASE ${name} TEMPLATE ${template} STRATEGY FILE_COPY`);
  t.teardown(async () => {
    for (const name of [...names, template]) await root.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await root.end();
    await shared.drop();
  });
  for (const name of names) {
    const url = withUrl(shared.appUrl, { database: name });
    await shared.superQuery(`INSERT INTO linkbay.tenants (id, slug, name, database_url) VALUES ($1, $2, $2, $3)`, [newTenantId(), name.slice(-4).replace('_', 'x'), url]);
  }
  const dir = await mkdtemp(join(tmpdir(), 'lbmt-fleet-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const generated = generateRlsSql(shared.config);
  for (const file of generated) await writeFile(join(dir, file.name), file.sql);
  // Numbered after the generated files, as a user's next migration would be.
  const widgets = `${String(generated.length + 1).padStart(5, '0')}-widgets.sql`;
  await writeFile(join(dir, widgets), 'CREATE TABLE widgets (id int PRIMARY KEY);');
  const migrated = async (name: string) => {
    const client = new pg.Client({ connectionString: withUrl(serverUrl(), { database: name }) });
    await client.connect();
    try {
      const { rows } = await client.query(`SELECT to_regclass('public.atdatabases_migrations_applied') IS NOT NULL AS table`);
      if (!rows[0].table) return false;
      return (await client.query(`SELECT count(*)::int AS n FROM atdatabases_migrations_applied WHERE name = $1 AND NOT obsolete`, [widgets])).rows[0].n === 1;
    } finally {
      await client.end();
    }
  };
  return { shared, names, dir, root, migrated };
}

test.serial(`${FLEET} tenant databases, concurrency 8, one broken: 199 migrated, exit 1, a re-run after the fix completes`, async (t) => {
  t.timeout(5 * 60_000); // 200 databases created, migrated twice and dropped: minutes on a loaded 2-core machine
  const { shared, names, dir, migrated } = await fleet(t, FLEET);
  const broken = names[137]!;
  const brokenDb = new pg.Client({ connectionString: withUrl(serverUrl(), { database: broken }) });
  await brokenDb.connect();
  t.teardown(() => brokenDb.end());
  await brokenDb.query('CREATE TABLE widgets (name text)'); // the widgets migration cannot create it there

  const out: string[] = [];
  const code = await main(['migrate', '--database-url', shared.superUrl, '--dir', dir, '--all-tenants', '--concurrency', '8'], (s) => out.push(s), (s) => out.push(s));
  t.is(code, 1);
  t.is(out.filter((l) => l.startsWith('[')).length, FLEET + 1, 'one line per database');
  t.is(out.at(-2), `${FLEET + 1} database(s): ${FLEET} migrated, 0 up to date, 1 failed, 0 skipped`);
  t.regex(out.at(-1)!, new RegExp(`failed: .*/${broken}: relation "widgets" already exists`));
  let ok = 0;
  for (const name of names) if (name !== broken && (await migrated(name))) ok += 1;
  t.is(ok, FLEET - 1, 'every other database was migrated');

  await brokenDb.query('DROP TABLE widgets');
  out.length = 0;
  t.is(await main(['migrate', '--database-url', shared.superUrl, '--dir', dir, '--all-tenants', '--concurrency', '8'], (s) => out.push(s), (s) => out.push(s)), 0);
  t.is(out.at(-1), `${FLEET + 1} database(s): 1 migrated, ${FLEET} up to date, 0 failed, 0 skipped`);
  t.true(await migrated(broken));
});

test.serial('a failing canary stops the rollout before the rest; --stop-on-failure starts nothing after a failure', async (t) => {
  const { shared, names, dir, migrated } = await fleet(t, 12);
  const first = new pg.Client({ connectionString: withUrl(serverUrl(), { database: names[1]! }) });
  await first.connect();
  t.teardown(() => first.end());
  await first.query('CREATE TABLE widgets (name text)');

  const canaryRun = await migrateAllTenants({ databaseUrl: shared.superUrl, directory: dir, canary: 3, concurrency: 2 });
  t.false(canaryRun.ok);
  // By database, in the order of the names (results come in the order the databases ended).
  const statuses = (results: typeof canaryRun.results) => ['shared', ...names].map((name) => results.find((r) => (name === 'shared' ? r.database.endsWith(`/${shared.name}`) : r.database.endsWith(`/${name}`)))?.status);
  t.deepEqual(statuses(canaryRun.results), ['applied', 'applied', 'failed', 'applied', ...Array(9).fill('skipped')]);
  const done: boolean[] = [];
  for (const name of names) done.push(await migrated(name));
  t.deepEqual(done, [true, false, true, ...Array(9).fill(false)], 'the canaries but the failed one, none of the rest');

  const stopping = await migrateAllTenants({ databaseUrl: shared.superUrl, directory: dir, concurrency: 1, stopOnFailure: true });
  t.false(stopping.ok);
  t.deepEqual(statuses(stopping.results), ['current', 'current', 'failed', ...Array(10).fill('skipped')], 'one at a time: nothing started after t001 failed');
});
