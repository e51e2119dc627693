/**
 * Classification: every table of the application's schemas is a tenant table, a global table or
 * exempt with a reason. A forgotten table with a tenant column is an error — it has no policy.
 */
import test from 'ava';
import { checkPosture, defineTenancy, type Finding } from '../src/index.js';
import { createTestDatabase, ORDERS_SCHEMA } from './helpers/db.js';

const classification = (findings: Finding[]) =>
  findings.filter((f) => ['LBMT_TENANT_TABLE_UNLISTED', 'LBMT_TABLE_UNCLASSIFIED', 'LBMT_CLASSIFIED_TABLE_MISSING'].includes(f.code)).map((f) => `${f.severity} ${f.code} ${f.object}`);

test('every table classified: nothing; a forgotten tenant table is an error, an unclassified one a warning, a listed one missing a warning', async (t) => {
  const db = await createTestDatabase({
    schema: `${ORDERS_SCHEMA}
      CREATE TABLE plans (id text PRIMARY KEY, price_cents int);
      CREATE TABLE job_queue (id bigint PRIMARY KEY, payload jsonb);
      CREATE TABLE invoices (tenant_id uuid NOT NULL, id bigint, total int);         -- forgotten: tenant data, no policy
      CREATE TABLE countries (code text PRIMARY KEY);                                   -- unclassified, global-looking
      CREATE SCHEMA billing;
      CREATE TABLE billing.rates (tenant_id uuid, rate int) PARTITION BY HASH (tenant_id);
      CREATE TABLE billing.rates_0 PARTITION OF billing.rates FOR VALUES WITH (MODULUS 1, REMAINDER 0);`,
    tenancy: { tables: ['orders', 'billing.rates'] },
  });
  t.teardown(() => db.drop());
  const config = defineTenancy({
    ...db.config,
    tables: db.config.tables.map((table) => ({ name: `${table.schema}.${table.table}`, tenantColumn: table.tenantColumn })),
    globalTables: ['plans', 'currencies'],
    exemptTables: [{ name: 'job_queue', reason: 'pg-boss style queue, rows carry no tenant data' }],
  });
  const report = await checkPosture(db.appPool, config);
  t.deepEqual(classification(report.findings), [
    'warning LBMT_TABLE_UNCLASSIFIED "public"."countries"',
    'error LBMT_TENANT_TABLE_UNLISTED "public"."invoices"',
    'warning LBMT_CLASSIFIED_TABLE_MISSING public.currencies',
  ]);
  t.false(report.ok, 'the forgotten tenant table breaks isolation');
  const fix = report.findings.find((f) => f.code === 'LBMT_TENANT_TABLE_UNLISTED')!.fix;
  t.regex(fix, /add "public\.invoices" to `tables`/);

  const complete = defineTenancy({
    ...config,
    tables: [...config.tables.map((table) => ({ name: `${table.schema}.${table.table}`, tenantColumn: table.tenantColumn }))],
    globalTables: ['plans', 'countries'],
    exemptTables: [...config.exemptTables, { name: 'invoices', reason: 'archived, read by the admin role only' }],
  });
  t.deepEqual(classification((await checkPosture(db.appPool, complete)).findings), [], 'partitions follow their parent; bookkeeping tables are exempt');
});

test('exemptTables need a reason, and a table is classified once', (t) => {
  t.throws(() => defineTenancy({ exemptTables: [{ name: 'jobs', reason: '' }] }), { message: /exemptTables\[0\]\.reason/ });
  t.throws(() => defineTenancy({ tables: ['orders'], exemptTables: [{ name: 'orders', reason: 'x' }] }), { message: /already a tenant or global table/ });
  t.throws(() => defineTenancy({ exemptTables: [{ name: 'jobs', reason: 'x', why: 'y' } as never] }), { message: /unknown key why/ });
  t.deepEqual(defineTenancy({ exemptTables: [{ name: 'ops.jobs', reason: 'queue' }] }).exemptTables, [{ name: 'ops.jobs', reason: 'queue' }]);
});
