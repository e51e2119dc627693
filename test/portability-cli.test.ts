import test from 'ava';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../src/cli.js';
import { portabilityFixture, seedTenant, serverDigest, targetCounts } from './helpers/portability.js';

test('the CLI exports to a file, imports it (dry run first), and moves a tenant with step lines', async (t) => {
  const f = await portabilityFixture();
  const dir = await mkdtemp(join(tmpdir(), 'lbmt-cli-port-'));
  t.teardown(async () => {
    await rm(dir, { recursive: true, force: true });
    await f.close();
  });
  const config = join(dir, 'multitenant.config.json');
  await writeFile(config, JSON.stringify({ roles: f.source.config.roles, tables: ['accounts', 'memberships'] }));
  const tenant = await seedTenant(f, 8);
  const original = await serverDigest(f.source, tenant.id);
  const out: string[] = [];
  const err: string[] = [];
  const run = (args: string[]) => main(args, (s) => out.push(s), (s) => err.push(s));

  const file = join(dir, 'tenant.ndjson');
  t.is(await run(['export', '--database-url', f.source.appUrl, '--config', config, '--tenant', tenant.id, '--out', file]), 0, err.join('\n'));
  t.true(err.some((line) => /^export: \d/.test(line)), 'a progress line');
  t.is(err.at(-1), 'exported public.accounts 8, public.memberships 16');
  t.like(JSON.parse((await readFile(file, 'utf8')).split('\n')[0]!), { tenant: tenant.id, version: 1 });

  t.is(await run(['import', '--database-url', f.target.ownerUrl, '--config', config, '--tenant', tenant.id, '--in', file, '--dry-run']), 0, err.join('\n'));
  t.is(err.at(-1), 'dry run, would import public.accounts 8, public.memberships 16');
  t.deepEqual(await targetCounts(f.target), [0, 0]);
  t.is(await run(['import', '--database-url', f.target.ownerUrl, '--config', config, '--tenant', tenant.id, '--in', file]), 0, err.join('\n'));
  t.deepEqual(await serverDigest(f.target, tenant.id), original);
  // A second insert is refused (exit 1, the reason said), nothing changed.
  t.is(await run(['import', '--database-url', f.target.ownerUrl, '--config', config, '--tenant', tenant.id, '--in', file]), 1);
  t.regex(err.at(-1)!, /already holds rows of this tenant/);
  await f.target.superQuery('DELETE FROM memberships; DELETE FROM accounts;');

  const move = ['move', '--database-url', f.source.adminUrl, '--app-url', f.source.appUrl, '--config', config, '--tenant', tenant.id,
    '--target-url', f.target.appUrl, '--target-owner-url', f.target.ownerUrl, '--settle-ms', '0'];
  t.is(await run(move), 0, err.join('\n'));
  const steps = err.filter((line) => line.startsWith('move ')).map((line) => line.replace(/^move [0-9a-f-]+: /, ''));
  t.deepEqual(steps, ['frozen', 'copied (public.accounts 8, public.memberships 16)', 'verified', 'switched', 'invalidated', 'cleaned']);
  t.regex(out.at(-1)!, /: succeeded at cleaned$/);
  t.deepEqual(await serverDigest(f.target, tenant.id), original);
  // --resume finishes a job another process recorded (or left), for the named target.
  const { TenantMoveJobs } = await import('../src/portability/index.js');
  const other = await seedTenant(f, 3);
  const recorder = new TenantMoveJobs({ portability: f.portability, adminPool: f.source.adminPool, targets: { eu: { databaseUrl: f.target.appUrl, targetPool: f.target.pool(f.target.ownerUrl, { max: 1 }) } } });
  const left = await recorder.start(other.id, { target: 'eu' });
  const resume = ['move', '--resume', '--target-name', 'eu', ...move.slice(1).filter((_, i, all) => all[i - 1] !== '--tenant' && all[i] !== '--tenant')];
  t.is(await run(resume), 0, err.join('\n'));
  t.is(out.at(-1), `${left.id}: succeeded at cleaned`);
  t.is((await serverDigest(f.target, other.id)).account_rows, 3);
  // Bad usage is exit 2.
  t.is(await run(['move', '--tenant', tenant.id]), 2);
  t.is(await run(['import', '--database-url', f.target.ownerUrl, '--config', config, '--tenant', tenant.id, '--mode', 'merge']), 2);
});
