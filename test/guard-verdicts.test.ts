import anyTest, { type TestFn } from 'ava';
import { parseSync } from 'libpg-query';
import { createQueryGuard, type TenantQueryGuard } from '../src/guard/index.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';

/**
 * The guard's verdict on a table of statements, with the catalog read from a real database:
 * orders/customers/items/billing.invoices/"Audit Log" carry tenant_id without RLS (guarded),
 * secure_notes is under RLS (not guarded), system_config is exempt, plans has no tenant column.
 * Every statement that is valid SQL is also EXPLAINed on the server, so the table cannot drift
 * into statements PostgreSQL would reject anyway.
 */

const test = anyTest as TestFn<{ db: TestDatabase; guard: TenantQueryGuard; serverVersion: number }>;

const A = '6f9619ff-8b86-4011-b42d-00c04fc964ff';
const B = '0e1d2c3b-4a59-4867-8766-554433221100';

const SCHEMA = `
  CREATE TABLE orders (tenant_id uuid NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY, customer_id bigint,
                       item text, amount int NOT NULL DEFAULT 0, parent_id bigint, PRIMARY KEY (tenant_id, id));
  CREATE TABLE customers (tenant_id uuid NOT NULL, id bigint NOT NULL, name text, PRIMARY KEY (tenant_id, id));
  CREATE TABLE items (tenant_id uuid NOT NULL, id bigint NOT NULL, order_id bigint, sku text, PRIMARY KEY (tenant_id, id));
  CREATE SCHEMA billing;
  CREATE TABLE billing.invoices (tenant_id uuid NOT NULL, id bigint NOT NULL, total int, PRIMARY KEY (tenant_id, id));
  CREATE TABLE "Audit Log" (tenant_id uuid NOT NULL, id bigint, "Event" text);
  CREATE TABLE plans (id bigint PRIMARY KEY, name text);
  CREATE TABLE system_config (tenant_id uuid, key text, value text);
  CREATE TABLE secure_notes (tenant_id uuid NOT NULL, id bigint, body text);
  CREATE VIEW order_totals AS SELECT count(*) AS n, sum(amount) AS total FROM orders;
  CREATE VIEW order_items AS SELECT id, item FROM orders;
  CREATE VIEW orders_of_tenant AS SELECT tenant_id, id, item FROM orders;
  CREATE FUNCTION noop() RETURNS void LANGUAGE sql AS 'SELECT';
  CREATE PROCEDURE noop_proc() LANGUAGE sql AS 'SELECT 1';
`;

type Expected = 'safe' | 'refused' | { unsafe: string };

interface Case {
  readonly sql: string;
  readonly expected: Expected;
  readonly values?: readonly unknown[];
  /** Not run through EXPLAIN: invalid on purpose, not explainable, or needs a newer server. */
  readonly explain?: false | number;
  /** Character offset the first violation must point at. */
  readonly at?: number;
}

const safe = (sql: string, extra: Partial<Case> = {}): Case => ({ sql, expected: 'safe', ...extra });
const unsafe = (sql: string, table: string, extra: Partial<Case> = {}): Case => ({ sql, expected: { unsafe: table }, ...extra });
const refused = (sql: string, extra: Partial<Case> = {}): Case => ({ sql, expected: 'refused', explain: false, ...extra });

const O = 'public.orders';
const C = 'public.customers';
const I = 'public.items';

const CASES: Case[] = [
  // Plain filters, spellings of the tenant, case and comments
  safe('SELECT * FROM orders WHERE tenant_id = $1'),
  unsafe('SELECT * FROM orders', O, { at: 14 }),
  unsafe('TABLE orders', O),
  safe('select * from ORDERS where TENANT_ID = $1'),
  safe('SELECT * FROM orders o WHERE o.tenant_id = $1'),
  safe('SELECT * FROM public.orders WHERE public.orders.tenant_id = $1'),
  safe('SELECT * FROM orders WHERE $1 = tenant_id'),
  safe('SELECT * FROM orders WHERE id = $1 AND tenant_id = $2', { values: [7, A] }),
  unsafe('SELECT * FROM orders WHERE id = $1 AND tenant_id = $2', O, { values: [A, 7], explain: false }),
  unsafe('SELECT * FROM orders WHERE tenant_id = $1', O, { values: [B] }),
  safe('SELECT * FROM orders WHERE tenant_id = $1', { values: [A.toUpperCase()] }),
  safe('SELECT * FROM orders WHERE tenant_id = $1::uuid'),
  safe('SELECT * FROM orders WHERE tenant_id = $1::text::uuid'),
  unsafe('SELECT * FROM orders WHERE tenant_id = $1::char(36)::uuid', O),
  unsafe('SELECT * FROM orders WHERE tenant_id = left($1, 36)::uuid', O),
  safe(`SELECT * FROM orders WHERE tenant_id = '${A}'`),
  safe(`SELECT * FROM orders WHERE tenant_id = '{${A.toUpperCase()}}'::uuid`),
  unsafe(`SELECT * FROM orders WHERE tenant_id = '${B}'`, O),
  safe(`SELECT * FROM orders WHERE tenant_id = current_setting('app.tenant_id')::uuid`),
  safe(`SELECT * FROM orders WHERE tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid`),
  safe(`SELECT * FROM orders WHERE tenant_id = (SELECT current_setting('app.tenant_id')::uuid)`),
  unsafe(`SELECT * FROM orders WHERE tenant_id = current_setting('app.other_id', true)::uuid`, O),
  safe('SELECT * FROM orders WHERE id > 1 AND (tenant_id = $1 AND item IS NOT NULL)'),
  safe('SELECT * FROM orders WHERE tenant_id IN ($1)'),
  safe('SELECT * FROM orders WHERE (tenant_id, id) = ($1, 5)'),
  unsafe('SELECT * FROM orders WHERE tenant_id IN ($1, $2)', O, { values: [A, B] }),
  unsafe('SELECT * FROM orders WHERE tenant_id = ANY($1)', O, { values: [[A]] }),
  unsafe('SELECT * FROM orders WHERE tenant_id = $1 OR id = 1', O),
  unsafe('SELECT * FROM orders WHERE (tenant_id = $1 OR tenant_id = $1)', O),
  unsafe('SELECT * FROM orders WHERE NOT (tenant_id <> $1)', O),
  unsafe('SELECT * FROM orders WHERE tenant_id <> $1', O),
  unsafe('SELECT * FROM orders WHERE tenant_id IS NOT DISTINCT FROM $1', O),
  unsafe('SELECT * FROM orders /* WHERE tenant_id = $1 */', O, { explain: false }),
  unsafe('SELECT * FROM orders -- WHERE tenant_id = $1', O, { explain: false }),
  safe('SELECT * FROM orders WHERE /* the tenant */ tenant_id = $1 -- filter'),
  unsafe(`SELECT * FROM orders WHERE item = 'WHERE tenant_id = $1'`, O),
  unsafe(`/* commandes → clientes */ SELECT * FROM orders`, O, { at: 41 }),
  refused(`SELECT * FROM set_config('app.tenant_id', $1, true)`, { values: [B] }),
  refused(`SELECT * FROM orders WHERE tenant_id = $1 AND item IN (SELECT pg_catalog.set_config('app.tenant_id', '${B}', true))`),
  unsafe(`SELECT * FROM orders WHERE item = $$ AND tenant_id = $1 $$`, O),
  unsafe('SELECT * FROM orders GROUP BY tenant_id, id HAVING tenant_id = $1', O),

  // Schemas, quoting, exempt / RLS / unguarded tables
  safe('SELECT * FROM billing.invoices WHERE tenant_id = $1'),
  unsafe('SELECT * FROM billing.invoices', 'billing.invoices'),
  unsafe('SELECT * FROM "billing"."invoices" i WHERE i.id = 1', 'billing.invoices'),
  safe('SELECT * FROM billing.invoices WHERE billing.invoices.tenant_id = $1'),
  unsafe('SELECT * FROM billing.invoices i WHERE billing.i.tenant_id = $1', 'billing.invoices', { explain: false }),
  safe('SELECT * FROM "Audit Log" a WHERE a.tenant_id = $1'),
  unsafe('SELECT "Event" FROM "Audit Log"', 'public.Audit Log'),
  safe('SELECT * FROM "ORDERS"', { explain: false }), // another (nonexistent) relation: quoted names are case-sensitive
  safe('SELECT * FROM system_config'),
  safe('SELECT * FROM secure_notes'),
  safe('SELECT * FROM plans'),
  unsafe('SELECT n FROM order_totals', 'public.order_totals'),
  unsafe(`UPDATE order_items SET item = 'x' WHERE id = 1`, 'public.order_items'),
  safe('SELECT * FROM orders_of_tenant WHERE tenant_id = $1'),
  unsafe('SELECT * FROM orders_of_tenant', 'public.orders_of_tenant'),

  // Joins
  safe('SELECT * FROM orders o JOIN customers c ON c.id = o.customer_id AND c.tenant_id = o.tenant_id WHERE o.tenant_id = $1'),
  unsafe('SELECT * FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.tenant_id = $1', C),
  safe('SELECT * FROM orders o JOIN customers c ON c.tenant_id = $1 AND c.id = o.customer_id WHERE o.tenant_id = $1'),
  safe('SELECT * FROM orders o, customers c WHERE c.tenant_id = o.tenant_id AND o.tenant_id = $1 AND c.id = o.customer_id'),
  unsafe('SELECT * FROM orders o, customers c WHERE o.tenant_id = $1', C),
  safe('SELECT * FROM orders o CROSS JOIN plans p WHERE o.tenant_id = $1'),
  safe('SELECT * FROM orders o JOIN customers c USING (tenant_id) WHERE o.tenant_id = $1'),
  unsafe('SELECT * FROM orders o NATURAL JOIN customers c WHERE o.tenant_id = $1', C),
  safe('SELECT * FROM orders o LEFT JOIN customers c ON c.tenant_id = o.tenant_id AND c.id = o.customer_id WHERE o.tenant_id = $1'),
  unsafe('SELECT * FROM orders o LEFT JOIN customers c ON c.id = o.customer_id WHERE o.tenant_id = $1', C),
  safe('SELECT * FROM orders o LEFT JOIN customers c ON c.id = o.customer_id WHERE o.tenant_id = $1 AND c.tenant_id = $1'),
  unsafe('SELECT * FROM orders o LEFT JOIN customers c ON c.tenant_id = $1 AND o.tenant_id = $1 AND c.id = o.customer_id', O),
  unsafe('SELECT * FROM orders o RIGHT JOIN customers c ON c.id = o.customer_id AND o.tenant_id = $1', C),
  safe('SELECT * FROM orders o RIGHT JOIN customers c ON o.tenant_id = c.tenant_id AND o.customer_id = c.id WHERE c.tenant_id = $1'),
  unsafe('SELECT * FROM orders o FULL JOIN customers c ON c.tenant_id = $1 AND o.tenant_id = $1 AND c.id = o.customer_id', O),
  safe('SELECT * FROM orders o FULL JOIN customers c ON c.id = o.customer_id WHERE o.tenant_id = $1 AND c.tenant_id = $1'),
  safe('SELECT * FROM orders a JOIN orders b ON b.parent_id = a.id AND b.tenant_id = a.tenant_id WHERE a.tenant_id = $1'),
  unsafe('SELECT * FROM orders a JOIN orders b ON b.parent_id = a.id WHERE a.tenant_id = $1', O, { at: 28 }),
  unsafe('SELECT * FROM orders c JOIN customers o ON o.id = c.customer_id WHERE o.tenant_id = $1', O),
  safe('SELECT * FROM customers orders WHERE orders.tenant_id = $1'),
  unsafe('SELECT * FROM orders o JOIN customers c ON c.id = o.customer_id WHERE tenant_id = $1', O, { explain: false }),
  safe('SELECT * FROM orders o JOIN plans p ON p.id = o.amount WHERE tenant_id = $1'),
  safe('SELECT * FROM orders o JOIN customers c ON c.tenant_id = o.tenant_id JOIN items i ON i.tenant_id = c.tenant_id WHERE o.tenant_id = $1'),
  // Regression: two references bound only through each other vouched for each other, and the
  // parameter binding them both was never compared with the tenant.
  unsafe('SELECT * FROM orders o JOIN customers c ON c.tenant_id = o.tenant_id WHERE o.tenant_id = $1', O, { values: [B] }),
  unsafe('SELECT * FROM customers c, orders o WHERE c.tenant_id = o.tenant_id AND o.tenant_id = $1', C, { values: [B] }),
  safe('SELECT * FROM orders AS o(t, oid) WHERE o.t = $1'),
  unsafe('SELECT * FROM orders AS o(x, t) WHERE o.t = $1', O, { explain: false }),

  // Subqueries (the seed README's cases first)
  unsafe('SELECT * FROM orders WHERE id IN (SELECT order_id FROM items WHERE tenant_id = $1)', O),
  unsafe('SELECT * FROM orders o WHERE o.tenant_id = $1 AND o.id IN (SELECT order_id FROM items)', I),
  safe('SELECT * FROM orders o WHERE o.tenant_id = $1 AND o.id IN (SELECT order_id FROM items WHERE tenant_id = $1)'),
  safe('SELECT * FROM orders o WHERE o.tenant_id = $1 AND EXISTS (SELECT 1 FROM items i WHERE i.order_id = o.id AND i.tenant_id = o.tenant_id)'),
  unsafe('SELECT * FROM orders o WHERE o.tenant_id = $1 AND EXISTS (SELECT 1 FROM items i WHERE i.order_id = o.id)', I),
  unsafe('SELECT * FROM orders o WHERE EXISTS (SELECT 1 FROM items i WHERE i.tenant_id = o.tenant_id AND i.tenant_id = $1)', O),
  unsafe('SELECT o.id, (SELECT count(*) FROM items i WHERE i.order_id = o.id) FROM orders o WHERE o.tenant_id = $1', I),
  safe('SELECT o.id, (SELECT count(*) FROM items i WHERE i.order_id = o.id AND i.tenant_id = $1) FROM orders o WHERE o.tenant_id = $1'),
  unsafe('SELECT ARRAY(SELECT sku FROM items) FROM orders WHERE tenant_id = $1', I),
  safe('SELECT * FROM (SELECT * FROM orders WHERE tenant_id = $1) s'),
  unsafe('SELECT * FROM (SELECT * FROM orders) s WHERE s.tenant_id = $1', O),
  safe('SELECT * FROM (SELECT id, tenant_id FROM orders WHERE tenant_id = $1) s JOIN items i ON i.order_id = s.id AND i.tenant_id = s.tenant_id'),
  safe('SELECT * FROM orders o, LATERAL (SELECT * FROM items i WHERE i.order_id = o.id AND i.tenant_id = o.tenant_id) x WHERE o.tenant_id = $1'),
  unsafe('SELECT * FROM orders o, LATERAL (SELECT * FROM items i WHERE i.order_id = o.id) x WHERE o.tenant_id = $1', I),
  safe('SELECT * FROM orders o WHERE o.tenant_id = $1 AND o.customer_id = ANY (SELECT c.id FROM customers c WHERE c.tenant_id = o.tenant_id AND EXISTS (SELECT 1 FROM items i WHERE i.tenant_id = c.tenant_id))'),
  unsafe('SELECT tenant_id, count(*) FROM orders WHERE tenant_id = $1 GROUP BY tenant_id HAVING count(*) > (SELECT count(*) FROM customers)', C),
  // Regression: a subquery in an ON clause was analysed before the WHERE was attached, so the
  // outer reference it correlates with looked unfiltered (and stayed so, memoised).
  safe('SELECT * FROM orders o JOIN items i ON i.order_id = o.id AND i.tenant_id = o.tenant_id AND EXISTS (SELECT 1 FROM customers c WHERE c.tenant_id = o.tenant_id) WHERE o.tenant_id = $1'),
  unsafe('SELECT * FROM orders o JOIN items i ON i.order_id = o.id AND i.tenant_id = o.tenant_id AND EXISTS (SELECT 1 FROM customers c WHERE c.id = o.customer_id) WHERE o.tenant_id = $1', C),
  unsafe('SELECT * FROM orders o, generate_series(1, (SELECT count(*) FROM customers)) g WHERE o.tenant_id = $1', C),

  // CTEs, data-modifying CTEs, recursion
  safe('WITH x AS (SELECT * FROM orders WHERE tenant_id = $1) SELECT * FROM x'),
  unsafe('WITH x AS (SELECT * FROM orders) SELECT * FROM x WHERE tenant_id = $1', O),
  unsafe('WITH x AS (SELECT * FROM orders) SELECT 1', O),
  safe('WITH orders AS (SELECT * FROM public.orders WHERE tenant_id = $1) SELECT * FROM orders'),
  safe('WITH x AS MATERIALIZED (SELECT * FROM orders WHERE tenant_id = $1), y AS (SELECT x.id, x.tenant_id FROM x) SELECT * FROM y JOIN items i ON i.tenant_id = y.tenant_id AND i.order_id = y.id'),
  unsafe('WITH x AS (SELECT id FROM orders WHERE tenant_id = $1) SELECT * FROM x JOIN items i ON i.order_id = x.id', I),
  unsafe('WITH d AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM d', O),
  safe('WITH d AS (DELETE FROM orders WHERE tenant_id = $1 AND id = 5 RETURNING id) SELECT count(*) FROM d'),
  safe('WITH moved AS (DELETE FROM orders WHERE tenant_id = $1 AND id = 1 RETURNING tenant_id, item) INSERT INTO items (tenant_id, id, sku) SELECT tenant_id, 1, item FROM moved'),
  unsafe('WITH u AS (UPDATE orders SET item = $1 WHERE id = 1 RETURNING *) SELECT * FROM u', O, { values: ['x'] }),
  safe('WITH RECURSIVE t AS (SELECT id, tenant_id FROM orders WHERE tenant_id = $1 AND parent_id IS NULL UNION ALL SELECT o.id, o.tenant_id FROM orders o JOIN t ON o.parent_id = t.id AND o.tenant_id = t.tenant_id) SELECT * FROM t'),
  unsafe('WITH RECURSIVE t AS (SELECT id, tenant_id FROM orders WHERE tenant_id = $1 AND parent_id IS NULL UNION ALL SELECT o.id, o.tenant_id FROM orders o JOIN t ON o.parent_id = t.id) SELECT * FROM t', O),

  // Set operations
  unsafe('SELECT id FROM orders WHERE tenant_id = $1 UNION SELECT id FROM customers', C),
  safe('SELECT id FROM orders WHERE tenant_id = $1 UNION ALL SELECT id FROM customers WHERE tenant_id = $1'),
  unsafe('SELECT id FROM orders WHERE tenant_id = $1 EXCEPT SELECT id FROM customers', C),
  unsafe('SELECT id FROM orders INTERSECT SELECT id FROM customers WHERE tenant_id = $1', O),
  safe('SELECT * FROM (SELECT tenant_id, id FROM orders WHERE tenant_id = $1 UNION ALL SELECT tenant_id, id FROM customers WHERE tenant_id = $1) u JOIN items i ON i.tenant_id = u.tenant_id'),
  unsafe(`SELECT * FROM (SELECT tenant_id, id FROM orders WHERE tenant_id = $1 UNION ALL SELECT '${B}'::uuid, 1) u JOIN items i ON i.tenant_id = u.tenant_id`, I),

  // INSERT
  safe(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'book')`),
  unsafe(`INSERT INTO orders (item) VALUES ('book')`, O),
  unsafe(`INSERT INTO orders (tenant_id, item) VALUES (DEFAULT, 'book')`, O, { explain: false }),
  unsafe(`INSERT INTO orders (tenant_id, item) VALUES ($2, $1)`, O, { values: ['book', B] }),
  safe(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'a'), ($1, 'b')`),
  unsafe(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'a'), ('${B}', 'b')`, O, { at: 56 }),
  safe(`INSERT INTO orders (item, tenant_id) VALUES ('a', current_setting('app.tenant_id')::uuid)`),
  safe(`INSERT INTO orders OVERRIDING SYSTEM VALUE VALUES ($1, 100, NULL, 'x', 0, NULL)`),
  unsafe(`INSERT INTO orders DEFAULT VALUES`, O),
  safe('INSERT INTO items (tenant_id, id, order_id, sku) SELECT tenant_id, id, id, item FROM orders WHERE tenant_id = $1'),
  unsafe('INSERT INTO items (tenant_id, id, order_id, sku) SELECT tenant_id, id, id, item FROM orders', O),
  safe('INSERT INTO items (tenant_id, id, sku) SELECT $1::uuid, id, name FROM plans'),
  unsafe('INSERT INTO items (tenant_id, id, sku) SELECT $1::uuid, id, name FROM plans', I, { values: [B] }),
  unsafe('INSERT INTO items SELECT * FROM items WHERE tenant_id = $1', I),
  safe(`INSERT INTO customers (tenant_id, id, name) VALUES ($1, 1, 'x') ON CONFLICT DO NOTHING`),
  safe(`INSERT INTO customers (tenant_id, id, name) VALUES ($1, 1, 'x') ON CONFLICT (tenant_id, id) DO UPDATE SET name = excluded.name`),
  unsafe(`INSERT INTO customers (tenant_id, id, name) VALUES ($1, 1, 'x') ON CONFLICT ON CONSTRAINT customers_pkey DO UPDATE SET name = excluded.name`, C),
  safe(`INSERT INTO customers AS c (tenant_id, id, name) VALUES ($1, 1, 'x') ON CONFLICT ON CONSTRAINT customers_pkey DO UPDATE SET name = excluded.name WHERE c.tenant_id = excluded.tenant_id`),
  unsafe(`INSERT INTO customers (tenant_id, id, name) VALUES ($1, 1, 'x') ON CONFLICT (tenant_id, id) DO UPDATE SET tenant_id = $2`, C, { values: [A, B] }),
  safe(`INSERT INTO secure_notes (id, body) VALUES (1, 'x')`),
  safe(`INSERT INTO plans (id, name) VALUES (1, 'x') RETURNING *`),

  // UPDATE / DELETE
  safe('UPDATE orders SET item = $2 WHERE tenant_id = $1 AND id = 3', { values: [A, 'x'] }),
  unsafe(`UPDATE orders SET item = 'x'`, O),
  unsafe(`UPDATE orders SET item = 'x' WHERE id = 3 OR tenant_id = $1`, O),
  unsafe('UPDATE orders SET tenant_id = $2 WHERE tenant_id = $1', O, { values: [A, B] }),
  safe('UPDATE orders SET tenant_id = $1, item = NULL WHERE tenant_id = $1'),
  unsafe(`UPDATE orders SET (item, tenant_id) = ('x', $2) WHERE tenant_id = $1`, O, { values: [A, B] }),
  safe('UPDATE orders o SET item = c.name FROM customers c WHERE o.tenant_id = $1 AND c.tenant_id = o.tenant_id AND c.id = o.customer_id'),
  unsafe('UPDATE orders o SET item = c.name FROM customers c WHERE o.tenant_id = $1 AND c.id = o.customer_id', C),
  unsafe(`UPDATE orders SET item = 'x' WHERE CURRENT OF c`, O, { explain: false }),
  safe('DELETE FROM orders WHERE tenant_id = $1 AND id = 9'),
  unsafe('DELETE FROM orders WHERE id = 9', O),
  safe('DELETE FROM orders o USING customers c WHERE o.tenant_id = $1 AND c.tenant_id = o.tenant_id AND c.id = o.customer_id'),
  unsafe('DELETE FROM orders o USING customers c WHERE c.tenant_id = $1 AND c.id = o.customer_id', O),
  safe('DELETE FROM billing.invoices WHERE tenant_id = $1 RETURNING id, total'),

  // MERGE
  safe('MERGE INTO orders t USING (SELECT * FROM items WHERE tenant_id = $1) s ON t.tenant_id = s.tenant_id AND t.id = s.order_id WHEN MATCHED THEN UPDATE SET item = s.sku'),
  unsafe('MERGE INTO orders t USING (SELECT * FROM items WHERE tenant_id = $1) s ON t.id = s.order_id WHEN MATCHED THEN DELETE', O),
  safe('MERGE INTO orders t USING (SELECT * FROM items WHERE tenant_id = $1) s ON t.tenant_id = $1 AND t.id = s.order_id WHEN NOT MATCHED THEN INSERT (tenant_id, item) VALUES (s.tenant_id, s.sku)'),
  unsafe('MERGE INTO orders t USING (SELECT * FROM items WHERE tenant_id = $1) s ON t.tenant_id = $1 AND t.id = s.order_id WHEN NOT MATCHED THEN INSERT (item) VALUES (s.sku)', O),
  unsafe('MERGE INTO orders t USING (SELECT * FROM items WHERE tenant_id = $1) s ON t.tenant_id = $1 AND t.id = s.order_id WHEN NOT MATCHED THEN INSERT (tenant_id, item) VALUES ($2, s.sku)', O, { values: [A, B] }),
  unsafe('MERGE INTO orders t USING items s ON t.tenant_id = $1 AND s.tenant_id = $1 AND t.id = s.order_id WHEN NOT MATCHED THEN INSERT (tenant_id, item) VALUES (s.tenant_id, s.sku)', I),
  safe('MERGE INTO orders t USING items s ON t.tenant_id = $1 AND s.tenant_id = $1 AND t.id = s.order_id WHEN MATCHED THEN UPDATE SET item = s.sku'),
  unsafe('MERGE INTO orders t USING (SELECT * FROM items WHERE tenant_id = $1) s ON t.tenant_id = $1 AND t.id = s.order_id WHEN NOT MATCHED BY SOURCE THEN DELETE', O, { explain: 170000 }),
  safe('MERGE INTO orders t USING (SELECT * FROM items WHERE tenant_id = $1) s ON t.tenant_id = $1 AND t.id = s.order_id WHEN NOT MATCHED BY SOURCE AND t.tenant_id = $1 THEN DELETE', { explain: 170000 }),

  // Allowed statements that are not plain queries
  safe(`SET LOCAL statement_timeout = '5s'`, { explain: false }),
  safe(`SELECT set_config('statement_timeout', '5s', true)`),
  safe('SHOW app.tenant_id', { explain: false }),
  safe('NOTIFY orders_changed', { explain: false }),
  safe('EXPLAIN SELECT * FROM orders WHERE tenant_id = $1', { explain: false }),
  unsafe('EXPLAIN ANALYZE DELETE FROM orders', O, { explain: false }),
  safe(`COPY (SELECT * FROM orders WHERE tenant_id = current_setting('app.tenant_id')::uuid) TO STDOUT`, { explain: false }),
  unsafe('DECLARE c CURSOR FOR SELECT * FROM orders', O, { explain: false }),
  safe('SELECT 1'),
  safe('-- nothing but a comment', { explain: false }),
  safe('SELECT noop()'),

  // Refused whatever the tables (PITFALLS 9)
  refused(`SELECT set_config('app.tenant_id', $1, true)`, { values: [B] }),
  refused(`SELECT * FROM orders WHERE tenant_id = $1 AND set_config('app.tenant_id', '${B}', true) IS NOT NULL`),
  refused(`SELECT set_config('APP.TENANT_ID', $1, false)`),
  refused(`SELECT set_config($2, $1, true)`, { values: [A, 'app.tenant_id'] }),
  refused(`SELECT set_config('role', 'postgres', true)`),
  refused(`SELECT set_config('search_path', 'evil', true)`),
  refused(`SELECT set_config('statement_timeout', '5s', false)`),
  // Another tenant's write key (src/write-gate.ts) taken would freeze its writes; a session lock outlives the transaction.
  refused(`SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('linkbay-writes:' || $2, 0))`, { values: [A, B] }),
  refused('SELECT pg_advisory_lock(42)'),
  refused('SELECT PG_TRY_ADVISORY_LOCK_SHARED(42)'),
  refused(`SET app.tenant_id = '${B}'`),
  refused(`SET LOCAL app.tenant_id = '${B}'`),
  refused(`SET LOCAL "App.Tenant_Id" TO '${B}'`),
  refused('SET statement_timeout = 0'),
  refused('SET LOCAL search_path = evil, public'),
  refused('RESET app.tenant_id'),
  refused('RESET ALL'),
  refused('DISCARD ALL'),
  refused('SET ROLE postgres'),
  refused('SET LOCAL ROLE postgres'),
  refused('RESET ROLE'),
  refused('SET SESSION AUTHORIZATION postgres'),
  refused('BEGIN'),
  refused('START TRANSACTION'),
  refused('COMMIT'),
  refused('END'),
  refused('ROLLBACK'),
  refused('SAVEPOINT s1'),
  refused('RELEASE SAVEPOINT s1'),
  refused('ROLLBACK TO SAVEPOINT s1'),
  refused(`PREPARE TRANSACTION 'x'`),
  refused(`DO $$ BEGIN PERFORM set_config('app.tenant_id', 'x', true); END $$`),
  refused('CALL noop_proc()'),
  refused('PREPARE p AS SELECT * FROM orders'),
  refused('EXECUTE p'),
  refused('DEALLOCATE ALL'),
  refused('LISTEN tenant_changes'),
  refused('UNLISTEN *'),
  refused('SELECT * FROM orders WHERE tenant_id = $1; SELECT * FROM orders'),
  refused(`SELECT 1; COMMIT`),
  refused('TRUNCATE orders'),
  refused('TRUNCATE plans'),
  unsafe('COPY orders TO STDOUT', O, { explain: false }),
  unsafe('LOCK TABLE orders', O, { explain: false }),
  refused(`SELECT query_to_xml('SELECT * FROM orders', true, false, '')`),
  refused(`SELECT table_to_xml('orders', true, false, '')`),
  refused('CREATE TABLE t2 (x int)'),
  refused('DROP TABLE orders'),
  refused('ALTER TABLE orders DISABLE ROW LEVEL SECURITY'),
  refused('SELECT * INTO orders_copy FROM orders WHERE tenant_id = $1'),
  refused('CREATE TEMP TABLE t3 AS SELECT * FROM orders WHERE tenant_id = $1'),
  refused('SELEC * FROM orders'),
];

test.before(async (t) => {
  const db = await createTestDatabase({ schema: SCHEMA, tenancy: { tables: ['secure_notes'] } });
  await db.superQuery(`GRANT USAGE ON SCHEMA billing TO ${db.config.roles.app}`);
  const guard = await createQueryGuard({ pool: db.appPool, tenancy: db.config, exemptTables: ['system_config'] });
  const serverVersion = Number((await db.superQuery('SHOW server_version_num')).rows[0].server_version_num);
  t.context = { db, guard, serverVersion };
});

test.after.always(async (t) => {
  await t.context.db?.drop();
});

test(`the verdict table has at least 80 statements (${CASES.length})`, (t) => {
  t.true(CASES.length >= 80);
  t.is(new Set(CASES.map((c) => `${c.sql} ${JSON.stringify(c.values)}`)).size, CASES.length, 'no duplicates');
});

test('the catalog guards the tables without RLS (and views exposing them), and nothing else', (t) => {
  const { catalog } = t.context.guard;
  t.deepEqual([...catalog.tables.keys()].sort(), ['billing.invoices', 'public.Audit Log', 'public.customers', 'public.items', 'public.orders', 'public.orders_of_tenant']);
  t.deepEqual([...catalog.blindViews.keys()].sort(), ['public.order_items', 'public.order_totals']);
});

CASES.forEach((c, i) => {
  const kind = c.expected === 'safe' ? 'safe' : c.expected === 'refused' ? 'refused' : `unsafe (${c.expected.unsafe})`;
  test(`verdict ${String(i + 1).padStart(3, '0')} ${kind}: ${c.sql.slice(0, 150)}${c.values ? ` with ${JSON.stringify(c.values)}` : ''}`, (t) => {
    const violations = t.context.guard.inspect(c.sql, c.values ?? [A], A);
    if (c.expected === 'safe') {
      t.deepEqual(violations, []);
      return;
    }
    t.true(violations.length > 0, 'expected a violation');
    if (c.expected === 'refused') {
      t.true(violations.some((v) => v.table === undefined), `a statement-level refusal, got ${JSON.stringify(violations)}`);
    } else {
      t.is(violations[0]!.table, c.expected.unsafe, JSON.stringify(violations));
    }
    if (c.at !== undefined) t.is(violations[0]!.location, c.at);
  });
});

test('every valid statement of the table is accepted by PostgreSQL (EXPLAIN)', async (t) => {
  const { db, serverVersion } = t.context;
  const failures: string[] = [];
  const client = await db.pool(db.superUrl, { max: 1 }).connect();
  try {
    for (const c of CASES) {
      if (c.explain === false || (typeof c.explain === 'number' && serverVersion < c.explain)) continue;
      await client.query('BEGIN');
      try {
        await client.query(`SELECT set_config('app.tenant_id', $1, true)`, [A]);
        await client.query(`EXPLAIN ${c.sql}`, (c.values ?? [A]).slice(0, parameterCount(c.sql)));
      } catch (error) {
        failures.push(`${c.sql}: ${(error as Error).message}`);
      } finally {
        await client.query('ROLLBACK');
      }
    }
  } finally {
    client.release();
  }
  t.deepEqual(failures, []);
});

/** How many bind parameters a statement uses (the highest `$n`), from its parse tree. */
function parameterCount(sql: string): number {
  const numbers = [...JSON.stringify(parseSync(sql)).matchAll(/"ParamRef":\{"number":(\d+)/g)].map((m) => Number(m[1]));
  return Math.max(0, ...numbers);
}
