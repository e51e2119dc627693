import anyTest, { type TestFn } from 'ava';
import { A, createGuardFixture, leaksWithoutGuard, runGuarded, showsB, type GuardFixture } from './guard-fixture.js';

/**
 * Issue 9, family 2: a column reference must be bound where PostgreSQL binds it. A plain subquery
 * in FROM does not see its siblings, a LATERAL item only the items to its left, a JOIN's ON only
 * that join's items, and in WITH RECURSIVE a CTE sees the later ones too. In each statement below
 * a filter names `c` (or `t`): the guard used to take the nearby `c` holding A ($1) while
 * PostgreSQL takes the other one, holding B ($2). Each is run without the guard (rolled back) to
 * show it reaches B, then for real with it: refused, nothing of B read or changed.
 */

const test = anyTest as TestFn<GuardFixture>;

test.before(async (t) => {
  t.context = await createGuardFixture();
});

test.after.always(async (t) => {
  await t.context.db?.drop();
});

const ATTACKS: Record<string, string> = {
  'a plain subquery in FROM binds to the enclosing level, not to its sibling':
    'SELECT (SELECT json_agg(d) FROM (SELECT $1::uuid AS tenant_id) c, (SELECT i.* FROM invoices i WHERE i.tenant_id = c.tenant_id) d) AS x FROM (SELECT $2::uuid AS tenant_id) c',
  'the same in a JOIN of the subquery':
    'SELECT (SELECT json_agg(d) FROM (SELECT $1::uuid AS tenant_id) c JOIN (SELECT i.* FROM invoices i WHERE i.tenant_id = c.tenant_id) d ON true) AS x FROM (SELECT $2::uuid AS tenant_id) c',
  'a plain subquery in a LATERAL item binds to the level the LATERAL sees':
    `DELETE FROM invoices x USING (SELECT $2::uuid AS tenant_id) c,
       LATERAL (SELECT d.tenant_id, d.id FROM (SELECT $1::uuid AS tenant_id) c, (SELECT i.tenant_id, i.id FROM invoices i WHERE i.tenant_id = c.tenant_id) d) e
     WHERE x.tenant_id = e.tenant_id AND x.id = e.id`,
  'a LATERAL item does not see a later sibling':
    'SELECT (SELECT json_agg(d) FROM LATERAL (SELECT i.* FROM invoices i WHERE i.tenant_id = c.tenant_id) d, (SELECT $1::uuid AS tenant_id) c) AS x FROM (SELECT $2::uuid AS tenant_id) c',
  'a function in FROM does not see a later sibling':
    'SELECT (SELECT json_agg(g) FROM unnest(ARRAY(SELECT i.note FROM invoices i WHERE i.tenant_id = c.tenant_id)) g, (SELECT $1::uuid AS tenant_id) c) AS x FROM (SELECT $2::uuid AS tenant_id) c',
  'a JOIN ... ON sees only the items of its join':
    'SELECT (SELECT json_agg(i) FROM (SELECT $1::uuid AS tenant_id) c, invoices i JOIN customers k ON i.tenant_id = c.tenant_id AND k.tenant_id = i.tenant_id AND k.id = i.id) AS x FROM (SELECT $2::uuid AS tenant_id) c',
  'a subquery in a JOIN ... ON sees only the items of its join':
    `SELECT (SELECT json_agg(k) FROM (SELECT $1::uuid AS tenant_id) c, customers k JOIN customers p ON p.tenant_id = k.tenant_id AND p.id = k.id AND EXISTS (SELECT 1 FROM invoices i WHERE i.tenant_id = c.tenant_id) AND k.tenant_id = c.tenant_id) AS x
       FROM (SELECT $2::uuid AS tenant_id) c`,
  'WITH RECURSIVE: a CTE sees the later CTEs of its list':
    `WITH t AS (SELECT $1::uuid AS tenant_id)
     SELECT (WITH RECURSIVE x AS (SELECT tenant_id FROM t), t AS (SELECT $2::uuid AS tenant_id) SELECT json_agg(i) FROM x, invoices i WHERE i.tenant_id = x.tenant_id) AS x`,
  'WITH RECURSIVE: a forward reference from a recursive CTE':
    `WITH t AS (SELECT $1::uuid AS tenant_id)
     SELECT (WITH RECURSIVE x(tenant_id, n) AS (SELECT tenant_id, 1 FROM t UNION ALL SELECT tenant_id, n + 1 FROM x WHERE n < 2), t AS (SELECT $2::uuid AS tenant_id)
             SELECT json_agg(i) FROM x, invoices i WHERE i.tenant_id = x.tenant_id) AS x`,
};

for (const [name, sql] of Object.entries(ATTACKS)) {
  test.serial(`${name}: refused, and run for real nothing of B is read or changed`, async (t) => {
    const fixture = t.context;
    t.true(await leaksWithoutGuard(fixture, sql), 'without the guard the statement reaches B');
    const outcome = await runGuarded(fixture, sql);
    t.deepEqual(outcome.refused, [0], 'the guard refused the attack');
    t.false(showsB(outcome.rows));
    t.true(outcome.bUnchanged, "B's rows are unchanged");
  });
}

// The same shapes, written so that the names bind where the filter means them: accepted, and
// they return A's rows only.
const SAFE: Record<string, string> = {
  'a LATERAL subquery sees the items to its left':
    'SELECT i.note FROM (SELECT $1::uuid AS tenant_id) c, LATERAL (SELECT * FROM invoices i WHERE i.tenant_id = c.tenant_id) i ORDER BY i.note',
  'a LATERAL subquery on the right of a join sees its left side':
    'SELECT i.note FROM (SELECT $1::uuid AS tenant_id) c JOIN LATERAL (SELECT * FROM invoices i WHERE i.tenant_id = c.tenant_id) i ON true ORDER BY i.note',
  'a plain subquery binds to the enclosing level':
    'SELECT (SELECT json_agg(d.note ORDER BY d.note) FROM (SELECT i.note FROM invoices i WHERE i.tenant_id = c.tenant_id) d) AS note FROM (SELECT $1::uuid AS tenant_id) c',
  'ON binds the items of its own join':
    'SELECT i.note FROM (SELECT $2::uuid AS tenant_id) c, (SELECT $1::uuid AS tenant_id) d JOIN invoices i ON i.tenant_id = d.tenant_id ORDER BY i.note',
  'an inner join\'s ON holds for the items joined to it':
    'SELECT i.note FROM (invoices i JOIN customers k ON k.tenant_id = i.tenant_id AND k.id = i.id) JOIN customers m ON m.tenant_id = k.tenant_id AND m.id = k.id WHERE i.tenant_id = $1 ORDER BY i.note',
};

for (const [name, sql] of Object.entries(SAFE)) {
  test.serial(`${name}: accepted, and returns A's rows only`, async (t) => {
    const outcome = await runGuarded(t.context, sql);
    t.deepEqual(outcome.refused, []);
    t.false(showsB(outcome.rows));
    t.true(JSON.stringify(outcome.rows).includes('anote1'), JSON.stringify(outcome.rows));
  });
}

test.serial('an outer join\'s ON does not hold for the rows joined to its preserved side', (t) => {
  const { guard } = t.context;
  // k is joined to i (preserved by the LEFT JOIN): i's rows without a match still reach m.
  const sql = 'SELECT * FROM (invoices i LEFT JOIN customers k ON k.tenant_id = $1 AND k.id = i.id) JOIN customers m ON m.tenant_id = i.tenant_id WHERE k.id IS NULL';
  t.deepEqual(
    guard.inspect(sql, [A], A).map((v) => v.table),
    ['public.invoices', 'public.customers'],
  );
});
