/**
 * Citus mode in the config and the generated SQL (no database needed; the SQL itself is applied to
 * a real cluster in test/citus-isolation.test.ts and test/citus-doctor.test.ts).
 */
import test from 'ava';
import { defineTenancy, generateRlsSql } from '../src/index.js';

test('engine defaults to postgres; citus is accepted; anything else and a global table that is a tenant table are refused', (t) => {
  t.is(defineTenancy().engine, 'postgres');
  t.deepEqual(defineTenancy().globalTables, []);
  const citus = defineTenancy({ engine: 'citus', tables: ['orders'], globalTables: ['plans', 'billing.rates'] });
  t.deepEqual(citus.globalTables, ['public.plans', 'billing.rates']);
  t.throws(() => defineTenancy({ engine: 'mysql' as never }), { code: 'LBMT_CONFIG_INVALID', message: /engine/ });
  t.deepEqual(defineTenancy({ globalTables: ['plans'] }).globalTables, ['public.plans'], 'global tables are for every engine (classification); Citus makes them reference tables');
  t.throws(() => defineTenancy({ engine: 'citus', tables: ['orders'], globalTables: ['orders'] }), { message: /is a tenant table/ });
  t.throws(() => defineTenancy({ engine: 'citus', globalTables: ['Bad-Name'] }), { message: /globalTables\[0\]/ });
});

test('Citus mode generates distributed tables with ONE permissive isolation policy, set_tenant and the role setting', (t) => {
  const config = defineTenancy({ engine: 'citus', tables: ['orders', { name: 'order_lines', tenantColumn: 'org_id' }], globalTables: ['plans'] });
  const files = generateRlsSql(config);
  t.deepEqual(files.map((f) => f.name), [
    '00001-roles.sql',
    '00002-linkbay-tenants.sql',
    '00003-linkbay-tenant-moves.sql',
    '00004-linkbay-tenant-lifecycle.sql',
    '00005-linkbay-policy-manifest.sql',
    '00006-linkbay-audit-commit-order.sql',
    '00007-citus.sql',
    '00008-citus-reference-tables.sql',
    '00009-rls-public-orders.sql',
    '00010-manifest-public-orders.sql',
    '00011-rls-public-order-lines.sql',
    '00012-manifest-public-order-lines.sql',
  ]);
  const [, , , , , , setup, reference, orders, ordersManifest, lines] = files.map((f) => f.sql) as string[];
  // The coordinator's catalog holds what Citus propagates to the shards: its state is recorded as on PostgreSQL.
  t.regex(ordersManifest!, /PERFORM linkbay\.record_table_state\('"public"\."orders"'::regclass\);/);
  t.regex(setup!, /ALTER ROLE "app_user" SET citus\.propagate_set_commands = 'local';/);
  t.regex(setup!, /EXECUTE format\('SET LOCAL app\.tenant_id = %L', tenant::uuid::text\)/);
  t.regex(setup!, /create_reference_table\('linkbay\.tenants'\)/);
  t.regex(setup!, /DROP TRIGGER IF EXISTS tenants_touch_updated_at/);
  t.regex(reference!, /create_reference_table\('public\.plans'\)/);
  t.regex(orders!, /create_distributed_table\('"public"\."orders"', 'tenant_id', colocate_with => 'default'\)/);
  t.regex(lines!, /create_distributed_table\('"public"\."order_lines"', 'org_id', colocate_with => 'public\.orders'\)/);
  for (const sql of [orders!, lines!]) {
    t.notRegex(sql, /CREATE POLICY[^;]*AS RESTRICTIVE/);
    t.is(sql.match(/CREATE POLICY/g)?.length, 1, 'one policy: no permissive access policy to OR with');
    t.regex(sql, /AS PERMISSIVE FOR ALL TO PUBLIC\n\s+USING \(.+ = NULLIF\(current_setting\('app\.tenant_id', true\), ''\)::uuid\)\n\s+WITH CHECK/);
    t.regex(sql, /DROP POLICY IF EXISTS lbmt_tenant_access/, 'the vanilla access policy is removed when switching modes');
  }
  t.deepEqual(generateRlsSql(config), files, 'deterministic');
  // The vanilla mode is unchanged by all this.
  const vanilla = generateRlsSql(defineTenancy({ tables: ['orders'] }));
  t.deepEqual(vanilla.map((f) => f.name), ['00001-roles.sql', '00002-linkbay-tenants.sql', '00003-linkbay-tenant-moves.sql', '00004-linkbay-tenant-lifecycle.sql', '00005-linkbay-policy-manifest.sql', '00006-linkbay-audit-commit-order.sql', '00007-rls-public-orders.sql', '00008-manifest-public-orders.sql']);
  t.regex(vanilla[6]!.sql, /AS RESTRICTIVE/);
});
