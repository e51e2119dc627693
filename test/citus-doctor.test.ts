/**
 * doctor and assertTenantIsolation on a real Citus cluster. The vanilla schema on Citus fails open
 * (Citus drops AS RESTRICTIVE on the shards, set_config never reaches them): doctor must say so
 * from the coordinator, and the isolation check must catch it. The Citus-mode schema passes both.
 */
import test from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../src/cli.js';
import { assertTenantIsolation, checkTenantIsolation } from '../src/testing/index.js';
import { checkPosture, defineTenancy, formatPostureReport, tenantQuery, type Finding, type TenancyConfig } from '../src/index.js';
import { createCitusTestDatabase, CITUS_SCHEMA, CITUS_TABLES, useCitusCluster, type CitusTestDatabase } from './helpers/citus-db.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA } from './helpers/db.js';

const { citusTest, cluster } = useCitusCluster(test);
const codes = (findings: Finding[], severity?: string) => [...new Set(findings.filter((f) => !severity || f.severity === severity).map((f) => f.code))].sort();

async function seed(db: CitusTestDatabase, tenants: string[]): Promise<void> {
  for (const [i, tenant] of tenants.entries()) {
    await db.superQuery(`INSERT INTO orders (tenant_id, id, item, plan) VALUES ($1, 1, $2, 'basic'), ($1, 2, $2, 'pro')`, [tenant, `t${i}`]);
    await db.superQuery(`INSERT INTO order_lines (tenant_id, order_id, line, sku) VALUES ($1, 1, 1, $2)`, [tenant, `t${i}`]);
  }
}

citusTest('the Citus-mode schema: doctor finds nothing that breaks isolation, and the isolation check passes', async (t) => {
  const c = cluster();
  const db = await createCitusTestDatabase(c, { schema: CITUS_SCHEMA, tenancy: CITUS_TABLES });
  t.teardown(() => db.drop());
  const tenants = [newTenantId(), newTenantId()] as [string, string];
  await seed(db, tenants);
  const report = await checkPosture(db.appPool, db.config);
  t.deepEqual(codes(report.findings, 'error'), [], formatPostureReport(report));
  t.true(report.ok);
  const isolation = await assertTenantIsolation({ appPool: db.appPool, adminPool: db.adminPool, config: db.config, tenants });
  t.true(isolation.ok);
  t.is(isolation.tables.find((r) => r.table === 'public.orders')!.visibleUnderA, 2);
});

citusTest('the vanilla schema on Citus fails open, and doctor on the coordinator says so', async (t) => {
  const c = cluster();
  // The vanilla generated SQL, then the tables distributed as a Citus user would do it.
  const db = await createCitusTestDatabase(c, { schema: CITUS_SCHEMA, tenancy: { engine: 'postgres', tables: CITUS_TABLES.tables } });
  t.teardown(() => db.drop());
  await db.superQuery(`SELECT create_reference_table('plans')`);
  await db.superQuery(`SELECT create_distributed_table('orders', 'tenant_id')`);
  await db.superQuery(`SELECT create_distributed_table('order_lines', 'tenant_id', colocate_with => 'orders')`);
  const tenants = [newTenantId(), newTenantId()] as [string, string];
  await seed(db, tenants);
  // What the issue saw: tenant A reads both tenants' rows; with no tenant at all, everything.
  const seen = await tenantQuery(db.appPool, tenants[0], 'SELECT count(DISTINCT tenant_id)::int AS n FROM orders', [], { tenancy: db.config });
  t.is(seen.rows[0].n, 2, 'fails open: this is the breakage doctor must report');

  const report = await checkPosture(db.appPool, db.config);
  t.false(report.ok);
  const errors = codes(report.findings, 'error');
  // LBMT_ISOLATION_POLICY_PERMISSIVE: making plans a reference table turned orders into a Citus local table
  // (its foreign key), and distributing that recreated even the coordinator's policy without RESTRICTIVE.
  for (const code of ['LBMT_CITUS_ENGINE_MISMATCH', 'LBMT_CITUS_RESTRICTIVE_NOT_ENFORCED', 'LBMT_CITUS_EXTRA_PERMISSIVE_POLICY', 'LBMT_CITUS_ROLE_SETTING_MISSING', 'LBMT_ISOLATION_POLICY_PERMISSIVE']) {
    t.true(errors.includes(code), `${code} in ${errors.join(', ')}`);
  }
  t.regex(formatPostureReport(report), /tenant isolation is BROKEN/);
  const shardFinding = report.findings.find((f) => f.code === 'LBMT_CITUS_EXTRA_PERMISSIVE_POLICY' && f.object === 'public.orders')!;
  t.regex(shardFinding.message, /^8 of 8 shards/, "every shard of orders (citus.shard_count = 8)");

  // The CLI, pointed at the coordinator as the issue did, now exits non-zero.
  const dir = await mkdtemp(join(tmpdir(), 'lbmt-citus-doctor-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'multitenant.config.json');
  await writeFile(file, JSON.stringify({ roles: db.config.roles, tables: CITUS_TABLES.tables }));
  const out: string[] = [];
  const code = await main(['doctor', '--database-url', db.superUrl, '--config', file], (line) => out.push(line), () => undefined);
  t.not(code, 0);
  t.regex(out.join('\n'), /LBMT_CITUS_EXTRA_PERMISSIVE_POLICY[\s\S]*tenant isolation is BROKEN/);

  const isolation = await checkTenantIsolation({ appPool: db.appPool, adminPool: db.adminPool, config: db.config, tenants });
  t.false(isolation.ok);
  t.true(isolation.breaches.some((b) => /of other tenants/.test(b)), isolation.breaches.join('\n'));
});

citusTest('doctor reads the shards: a shard without the policy, an extra permissive policy on a shard, the role setting', async (t) => {
  const c = cluster();
  const db = await createCitusTestDatabase(c, { schema: CITUS_SCHEMA, tenancy: CITUS_TABLES });
  t.teardown(() => db.drop());
  const shards = await db.superQuery<{ shard: string; port: number }>(
    `SELECT shard_name AS shard, nodeport AS port FROM citus_shards WHERE table_name = 'orders'::regclass ORDER BY shardid LIMIT 2`,
  );
  const [first, second] = shards.rows as [{ shard: string; port: number }, { shard: string; port: number }];
  const onWorker = (port: number, sql: string) => db.workerQuery(c.workers.findIndex((w) => w.port === port), sql);
  // By hand on the worker, behind Citus's back: the coordinator's catalog does not change.
  await onWorker(first.port, `DROP POLICY lbmt_tenant_isolation ON ${first.shard}`);
  await onWorker(second.port, `CREATE POLICY sneaky ON ${second.shard} AS PERMISSIVE FOR SELECT TO PUBLIC USING (true)`);
  await db.superQuery(`ALTER ROLE ${db.config.roles.app} RESET citus.propagate_set_commands`);

  const report = await checkPosture(db.appPool, db.config);
  const errors = report.findings.filter((f) => f.severity === 'error');
  t.deepEqual(codes(errors), ['LBMT_CITUS_EXTRA_PERMISSIVE_POLICY', 'LBMT_CITUS_ROLE_SETTING_MISSING', 'LBMT_CITUS_SHARD_POLICY_MISSING'], formatPostureReport(report));
  const missing = errors.find((f) => f.code === 'LBMT_CITUS_SHARD_POLICY_MISSING')!;
  t.is(missing.object, 'public.orders');
  t.regex(missing.message, /^1 of \d+ shards \(\d+\)/);
});

citusTest('doctor reports tables not distributed by the tenant column, reference tables, colocation, and a RESTRICTIVE policy', async (t) => {
  const c = cluster();
  const db = await createCitusTestDatabase(c, { schema: CITUS_SCHEMA, tenancy: CITUS_TABLES });
  t.teardown(() => db.drop());
  await db.superQuery(`
    CREATE TABLE notes (tenant_id uuid NOT NULL, id bigint PRIMARY KEY, body text);
    SELECT create_distributed_table('notes', 'id');
    CREATE TABLE settings (tenant_id uuid NOT NULL PRIMARY KEY, value text);
    SELECT create_reference_table('settings');
    CREATE TABLE events (tenant_id uuid NOT NULL, id bigint, PRIMARY KEY (tenant_id, id));
    SELECT create_distributed_table('events', 'tenant_id', colocate_with => 'none', shard_count => 4);
    CREATE TABLE drafts (tenant_id uuid NOT NULL, id bigint, PRIMARY KEY (tenant_id, id));
    CREATE POLICY extra_guard ON orders AS RESTRICTIVE FOR ALL TO PUBLIC USING (amount_cents >= 0);
  `);
  const config: TenancyConfig = defineTenancy({ engine: 'citus', roles: db.config.roles, tables: ['orders', 'order_lines', 'notes', 'settings', 'events', 'drafts'] });
  const report = await checkPosture(db.appPool, config);
  const by = (object: string) => codes(report.findings.filter((f) => f.object === object));
  t.true(by('public.notes').includes('LBMT_CITUS_POLICY_NOT_ON_DISTRIBUTION_COLUMN'), by('public.notes').join());
  t.true(by('public.settings').includes('LBMT_CITUS_TABLE_NOT_DISTRIBUTED'));
  t.true(by('public.events').includes('LBMT_CITUS_NOT_COLOCATED'));
  t.true(by('public.drafts').includes('LBMT_CITUS_TABLE_NOT_DISTRIBUTED'));
  t.true(by('public.orders').includes('LBMT_CITUS_RESTRICTIVE_NOT_ENFORCED'));
  t.false(by('public.order_lines').some((code) => code.startsWith('LBMT_CITUS')), by('public.order_lines').join());
});

citusTest('engine mismatch: a Citus config on plain PostgreSQL, and doctor pointed at a worker', async (t) => {
  const c = cluster();
  const vanilla = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  t.teardown(() => vanilla.drop());
  const asCitus = defineTenancy({ engine: 'citus', roles: vanilla.config.roles, tables: ['orders'] });
  const plain = await checkPosture(vanilla.appPool, asCitus);
  t.true(codes(plain.findings, 'error').includes('LBMT_CITUS_ENGINE_MISMATCH'));
  t.false(codes((await checkPosture(vanilla.appPool, vanilla.config)).findings).some((code) => code.startsWith('LBMT_CITUS')), 'nothing about Citus on a vanilla setup');

  const db = await createCitusTestDatabase(c, { schema: CITUS_SCHEMA, tenancy: CITUS_TABLES });
  t.teardown(() => db.drop());
  const worker = db.pool(db.cluster.url(db.name, c.workers[0]), { max: 1 });
  const onWorker = await checkPosture(worker, db.config);
  t.true(codes(onWorker.findings).includes('LBMT_CITUS_NOT_COORDINATOR'));
});
