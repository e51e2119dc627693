/**
 * `policyForm: 'initplan'` (the setting wrapped in a scalar subquery) on a real database: the same
 * isolation as the default bare form, and the planner evaluates the setting once, as an InitPlan.
 */
import test from 'ava';
import { TenantIsolationError, tenantQuery, withTenantTransaction, type TenancyInput } from '../src/index.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA } from './helpers/db.js';

interface PlanNode {
  'Node Type': string;
  'Parent Relationship'?: string;
  Filter?: string;
  'Index Cond'?: string;
  'Recheck Cond'?: string;
  Plans?: PlanNode[];
}
const nodes = (node: PlanNode): PlanNode[] => [node, ...(node.Plans ?? []).flatMap(nodes)];

for (const policyForm of ['initplan', 'bare'] as const) {
  test(`policyForm '${policyForm}': tenants see and write only their own rows, and the plan ${policyForm === 'initplan' ? 'reads the setting in an InitPlan' : 'has no InitPlan'}`, async (t) => {
    const tenancy: Omit<TenancyInput, 'roles'> = policyForm === 'bare' ? { tables: ['orders'] } : { tables: ['orders'], policyForm };
    const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy });
    t.teardown(() => db.drop());
    const [a, b] = [newTenantId(), newTenantId()];
    await db.superQuery(`INSERT INTO orders (tenant_id, item) SELECT $1::uuid, 'a' || g FROM generate_series(1, 3) g UNION ALL SELECT $2::uuid, 'b' || g FROM generate_series(1, 3) g`, [a, b]);
    const { rows: policies } = await db.superQuery(`SELECT qual, with_check FROM pg_policies WHERE tablename = 'orders' AND permissive = 'RESTRICTIVE'`);
    t.is(policies.length, 1);
    for (const expression of [policies[0].qual, policies[0].with_check]) t.is(/\(\s*SELECT\s/i.test(expression), policyForm === 'initplan', expression);

    t.deepEqual((await tenantQuery(db.appPool, a, 'SELECT item FROM orders ORDER BY item')).rows.map((r) => r.item), ['a1', 'a2', 'a3']);
    t.deepEqual((await tenantQuery(db.appPool, b, 'SELECT item FROM orders ORDER BY item')).rows.map((r) => r.item), ['b1', 'b2', 'b3']);
    t.is((await db.appPool.query('SELECT * FROM orders')).rowCount, 0, 'no tenant, no rows');
    await t.throwsAsync(tenantQuery(db.appPool, a, `INSERT INTO orders (tenant_id, item) VALUES ($1, 'forged')`, [b]), { instanceOf: TenantIsolationError });
    t.is((await tenantQuery(db.appPool, a, `UPDATE orders SET item = 'moved', tenant_id = $1`, [b]).catch((error: unknown) => error)) instanceof TenantIsolationError, true, 'an UPDATE moving rows to another tenant is refused');
    t.is((await tenantQuery(db.appPool, a, `DELETE FROM orders WHERE tenant_id = $1`, [b])).rowCount, 0);
    t.is((await db.superQuery('SELECT count(*)::int AS n FROM orders WHERE tenant_id = $1', [b])).rows[0].n, 3, "b's rows untouched");

    const plan = await withTenantTransaction(db.appPool, a, async (tx) => (await tx.query('EXPLAIN (FORMAT JSON) SELECT * FROM orders')).rows[0]['QUERY PLAN'][0].Plan as PlanNode);
    const all = nodes(plan);
    const initPlans = all.filter((n) => n['Parent Relationship'] === 'InitPlan');
    t.is(initPlans.length > 0, policyForm === 'initplan', JSON.stringify(plan));
    // The conditions of the scan of orders (and of its bitmap index scan), not of the InitPlan.
    const condition = all
      .filter((n) => /Scan/.test(n['Node Type']) && !initPlans.includes(n))
      .map((n) => [n.Filter, n['Index Cond'], n['Recheck Cond']].filter(Boolean).join(' '))
      .join(' ');
    t.regex(condition, /tenant_id/, 'the scan is restricted by the tenant column');
    // The bare form evaluates current_setting() in the scan itself; the initplan form refers to the InitPlan's result.
    t.is(condition.includes('current_setting'), policyForm === 'bare', condition);
  });
}
