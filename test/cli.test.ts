import test from 'ava';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defineTenancy, generateRlsSql } from '../src/index.js';
import { main } from '../src/cli.js';
import { createTestDatabase, ORDERS_SCHEMA } from './helpers/db.js';

test('the CLI generates the files and migrates them', async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] }, migrate: false });
  const dir = await mkdtemp(join(tmpdir(), 'lbmt-cli-'));
  t.teardown(async () => {
    await rm(dir, { recursive: true, force: true });
    await db.drop();
  });
  const configFile = join(dir, 'multitenant.config.json');
  await writeFile(configFile, JSON.stringify({ roles: db.config.roles, tables: ['orders'] }));
  const out: string[] = [];
  const err: string[] = [];
  const say = (s: string) => out.push(s);
  const complain = (s: string) => err.push(s);
  t.is(await main(['generate', '--config', configFile, '--out', join(dir, 'migrations')], say, complain), 0);
  const names = await readdir(join(dir, 'migrations'));
  t.deepEqual(names.sort(), ['00001-roles.sql', '00002-linkbay-tenants.sql', '00003-linkbay-tenant-moves.sql', '00004-linkbay-tenant-lifecycle.sql', '00005-linkbay-policy-manifest.sql', '00006-linkbay-audit-commit-order.sql', '00007-rls-public-orders.sql', '00008-manifest-public-orders.sql']);
  t.is(await readFile(join(dir, 'migrations', names[6]!), 'utf8'), generateRlsSql(db.config)[6]!.sql);
  t.is(await main(['migrate', '--database-url', db.superUrl, '--dir', join(dir, 'migrations')], say, complain), 0);
  t.true(out.includes('8 migration(s) applied'));
  t.is(await main(['migrate', '--database-url', db.superUrl, '--dir', join(dir, 'migrations')], say, complain), 0);
  t.is(out.at(-1), '0 migration(s) applied');
  // bad usage is exit code 2 and names the problem
  t.is(await main(['generate', '--out', dir], say, complain), 2);
  t.regex(err.at(-1)!, /--config/);
  t.is(await main(['generate', '--config', configFile, '--out', dir, '--bogus'], say, complain), 2);
  await writeFile(configFile, JSON.stringify({ setting: 'nodot' }));
  t.is(await main(['generate', '--config', configFile, '--out', dir], say, complain), 2);
  t.regex(err.at(-1)!, /`setting`/);
  t.is(await main(['frobnicate'], say, complain), 2);
});

test('generate --start, --no-registry and --only choose the files and their numbers', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'lbmt-cli-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const roles = { owner: 'o_role', app: 'a_role', admin: 'x_role' };
  const configFile = join(dir, 'multitenant.config.json');
  await writeFile(configFile, JSON.stringify({ roles, tables: ['orders', 'customers'] }));
  const config = defineTenancy({ roles, tables: ['orders', 'customers'] });
  const quiet = () => undefined;
  const generated = async (name: string, ...flags: string[]) => {
    t.is(await main(['generate', '--config', configFile, '--out', join(dir, name), ...flags], quiet, quiet), 0, flags.join(' '));
    const names = (await readdir(join(dir, name))).sort();
    return Promise.all(names.map(async (file) => ({ name: file, sql: await readFile(join(dir, name, file), 'utf8') })));
  };
  t.deepEqual(await generated('start', '--start', '40', '--no-registry'), generateRlsSql(config, { startIndex: 40, includeRegistry: false }));
  t.deepEqual((await generated('start-only')).map((f) => f.name), [
    '00001-roles.sql', '00002-linkbay-tenants.sql', '00003-linkbay-tenant-moves.sql', '00004-linkbay-tenant-lifecycle.sql', '00005-linkbay-policy-manifest.sql', '00006-linkbay-audit-commit-order.sql',
    '00007-rls-public-orders.sql', '00008-manifest-public-orders.sql', '00009-rls-public-customers.sql', '00010-manifest-public-customers.sql',
  ]);
  const setup = await generated('setup', '--only', 'setup');
  t.deepEqual(setup, generateRlsSql(config, { only: 'setup' }));
  t.deepEqual(setup.map((f) => f.name), ['00001-roles.sql', '00002-linkbay-tenants.sql', '00003-linkbay-tenant-moves.sql', '00004-linkbay-tenant-lifecycle.sql', '00005-linkbay-policy-manifest.sql', '00006-linkbay-audit-commit-order.sql']);
  const tables = await generated('tables', '--only', 'tables', '--start', '7');
  t.deepEqual(tables, generateRlsSql(config, { only: 'tables', startIndex: 7 }));
  t.deepEqual(tables.map((f) => f.name), ['00007-rls-public-orders.sql', '00008-manifest-public-orders.sql', '00009-rls-public-customers.sql', '00010-manifest-public-customers.sql']);
  const err: string[] = [];
  for (const bad of [['--start', '0'], ['--start', 'x'], ['--only', 'everything']]) {
    t.is(await main(['generate', '--config', configFile, '--out', join(dir, 'bad'), ...bad], quiet, (s) => err.push(s)), 2, bad.join(' '));
    t.regex(err.at(-1)!, new RegExp(bad[0]!));
  }
});
