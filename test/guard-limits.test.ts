import anyTest, { type TestFn } from 'ava';
import { withTenantTransaction } from '../src/index.js';
import { createQueryGuard, type TenantQueryGuard } from '../src/guard/index.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';

/**
 * What the guard cannot promise (docs/guard.md, "the error channel"), shown rather than claimed:
 * a statement it rightly accepts (every row in its result is the tenant's) can still fail on a
 * row of another tenant, and the error message carries that row's value. Under RLS the same
 * statement cannot, because the policy's condition is a security barrier evaluated first. This is
 * why RLS is the isolation boundary and the guard is defence in depth.
 */

const test = anyTest as TestFn<{ db: TestDatabase; guard: TenantQueryGuard }>;

const A = '6f9619ff-8b86-4011-b42d-00c04fc964ff';
const B = '0e1d2c3b-4a59-4867-8766-554433221100';

const SCHEMA = `
  CREATE TABLE orders (tenant_id uuid NOT NULL, id int NOT NULL, customer_id int, PRIMARY KEY (tenant_id, id));
  CREATE TABLE customers (tenant_id uuid NOT NULL, id int NOT NULL, name text, PRIMARY KEY (tenant_id, id));
  CREATE TABLE customers_rls (tenant_id uuid NOT NULL, id int NOT NULL, name text, PRIMARY KEY (tenant_id, id));
  INSERT INTO orders SELECT '${A}', i, i FROM generate_series(1, 30) i;
  INSERT INTO customers SELECT '${A}', i, 'A-cust-' || i FROM generate_series(1, 30) i;
  INSERT INTO customers SELECT '${B}', i, 'bsecret-cust-' || i FROM generate_series(1, 30) i;
  INSERT INTO customers_rls SELECT * FROM customers;
  ANALYZE;
`;

test.before(async (t) => {
  const db = await createTestDatabase({ schema: SCHEMA, tenancy: { tables: ['customers_rls'] } });
  await db.superQuery(`GRANT SELECT ON orders, customers TO ${db.config.roles.app}`);
  const guard = await createQueryGuard({ pool: db.appPool, tenancy: db.config });
  t.context = { db, guard };
});

test.after.always(async (t) => {
  await t.context.db?.drop();
});

// The tenant filter reaches c only through the join with a subquery PostgreSQL does not flatten
// (OFFSET 0), so c's scan evaluates the cast on every tenant's rows.
const statement = (table: string) =>
  `SELECT c.id FROM (SELECT tenant_id, customer_id FROM orders WHERE tenant_id = $1 OFFSET 0) o
     JOIN ${table} c ON c.tenant_id = o.tenant_id AND c.id = o.customer_id
    WHERE (CASE WHEN c.name LIKE 'A%' THEN 1 ELSE c.name::int END) = 1`;

test('the error channel is not covered: an accepted statement fails with a value of another tenant in the message', async (t) => {
  const { db, guard } = t.context;
  t.deepEqual(guard.inspect(statement('customers'), [A], A), [], 'the guard accepts it: every row it returns is A\'s');
  const error = await t.throwsAsync(withTenantTransaction(db.appPool, A, (tx) => tx.query(statement('customers'), [A]), { tenancy: db.config, guard }));
  t.regex(error!.message, /invalid input syntax for type integer: "bsecret-cust-\d+"/);
});

test('under RLS the same statement only ever sees the tenant\'s rows (the policy is evaluated first)', async (t) => {
  const { db, guard } = t.context;
  t.false(guard.catalog.tables.has('public.customers_rls'), 'protected by RLS, so not guarded');
  const rows = await withTenantTransaction(db.appPool, A, async (tx) => (await tx.query(statement('customers_rls'), [A])).rows, { tenancy: db.config, guard });
  t.is(rows.length, 30);
});
