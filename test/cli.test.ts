import test from 'ava';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateRlsSql } from '../src/index.js';
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
  t.deepEqual(names.sort(), ['00001-roles.sql', '00002-linkbay-tenants.sql', '00003-linkbay-tenant-moves.sql', '00004-rls-public-orders.sql']);
  t.is(await readFile(join(dir, 'migrations', names[3]!), 'utf8'), generateRlsSql(db.config)[3]!.sql);
  t.is(await main(['migrate', '--database-url', db.superUrl, '--dir', join(dir, 'migrations')], say, complain), 0);
  t.true(out.includes('4 migration(s) applied'));
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
