/**
 * doctor --perf: policies that isolate but make every query slow are named, each with its fix; the
 * generated schema is clean. Each on a real database, EXPLAIN run as the app role.
 */
import test from 'ava';
import { checkPosture, type Finding } from '../src/index.js';
import { createTestDatabase, ORDERS_SCHEMA } from './helpers/db.js';

const perfCodes = (findings: Finding[]) => findings.filter((f) => f.code.startsWith('LBMT_POLICY_') || f.code === 'LBMT_PERF_CHECK_FAILED').map((f) => `${f.code} ${f.object}`);

test('the generated schema has no performance finding', async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  t.teardown(() => db.drop());
  const report = await checkPosture(db.appPool, db.config, { performance: true });
  t.deepEqual(perfCodes(report.findings), []);
  const asSuperuser = await checkPosture(db.pool(db.superUrl), db.config, { performance: true, runtimeRole: db.config.roles.app });
  t.deepEqual(perfCodes(asSuperuser.findings), [], 'the same as the migration role, which SETs ROLE to the app role');
});

test('no index for the tenant (also LBMT_TENANT_INDEX_MISSING), a mixed predicate and a VOLATILE function in a policy are each reported', async (t) => {
  const db = await createTestDatabase({
    schema: `${ORDERS_SCHEMA}
      CREATE TABLE notes (tenant_id uuid NOT NULL, body text NOT NULL);`,
    tenancy: { tables: ['orders', 'notes'] },
  });
  t.teardown(() => db.drop());
  const setting = `current_setting('app.tenant_id', true)`;
  await db.superQuery(`
    CREATE FUNCTION public.current_tenant() RETURNS uuid LANGUAGE sql VOLATILE AS $$ SELECT NULLIF(${setting}, '')::uuid $$;
    GRANT EXECUTE ON FUNCTION public.current_tenant() TO ${db.config.roles.app};
    CREATE POLICY mixed ON orders AS RESTRICTIVE USING (tenant_id = NULLIF(${setting}, '')::uuid OR item = 'public');
    CREATE POLICY volatile ON orders AS RESTRICTIVE USING (tenant_id = public.current_tenant());
    -- The generated migration indexes the tenant column; a table without one:
    DO $$ DECLARE i text; BEGIN
      FOR i IN SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 'public.notes'::regclass LOOP EXECUTE 'DROP INDEX ' || i; END LOOP;
    END $$;`);
  const report = await checkPosture(db.appPool, db.config, { performance: true });
  const codes = perfCodes(report.findings);
  t.true(codes.includes('LBMT_POLICY_TENANT_FILTER "public"."notes"'), codes.join('\n'));
  t.true(report.findings.some((f) => f.code === 'LBMT_TENANT_INDEX_MISSING' && f.object.includes('notes')));
  t.true(codes.includes('LBMT_POLICY_MIXED_PREDICATE "public"."orders" policy mixed'), codes.join('\n'));
  t.true(codes.includes('LBMT_POLICY_VOLATILE_FUNCTION "public"."orders" policy volatile'), codes.join('\n'));
  t.false(codes.includes('LBMT_POLICY_TENANT_FILTER "public"."orders"'), 'orders is still read by its index: the generated predicate serves it, the others filter after');
  t.false(codes.some((c) => c.includes('lbmt_tenant_isolation')), 'the generated policies are not blamed');
  const fix = report.findings.find((f) => f.code === 'LBMT_POLICY_TENANT_FILTER' && f.object.includes('notes'))!.fix;
  t.regex(fix, /CREATE INDEX ON "public"\."notes" \("tenant_id"\)/);
});
