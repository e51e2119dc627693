import anyTest, { type TestFn } from 'ava';
import type pg from 'pg';
import { runWithTenantContext, TenantGuardError, withTenantTransaction } from '../src/index.js';
import { createQueryGuard } from '../src/guard/index.js';
import { A, B, createGuardFixture, rowsOfB, showsB, type GuardFixture } from './guard-fixture.js';

/**
 * Issue 9, families 6 and 7: what outlives one statement on a pooled connection. A named
 * statement is run by node-postgres as the connection prepared it, whatever text comes with it
 * later; a WITH HOLD cursor outlives the transaction that declared it. Both on a pool of one
 * connection, so that the next transaction surely gets the same session.
 */

const test = anyTest as TestFn<GuardFixture & { pool: pg.Pool }>;

test.before(async (t) => {
  const fixture = await createGuardFixture();
  t.context = { ...fixture, pool: fixture.db.pool(fixture.db.appUrl, { max: 1 }) };
});

test.after.always(async (t) => {
  await t.context.db?.drop();
});

const SELECT_OWN = 'SELECT note FROM invoices WHERE tenant_id = $1 ORDER BY id';

test.serial('without the guard, a named statement sent again with an empty text runs the prepared one with the new values', async (t) => {
  const { pool } = t.context;
  await pool.query({ name: 'inv-raw', text: SELECT_OWN, values: [A] });
  const { rows } = await pool.query({ name: 'inv-raw', text: '', values: [B] });
  t.true(showsB(rows), 'pg ran the stored statement for B');
});

test.serial('guard.wrap refuses a named statement sent without its text, or with another text than its name was prepared with', async (t) => {
  const { pool, guard } = t.context;
  const db = guard.wrap(pool);
  await runWithTenantContext(A, async () => {
    const first = await db.query({ name: 'inv', text: SELECT_OWN, values: [A] } as never);
    t.deepEqual(first.rows.map((r: { note: string }) => r.note), ['anote1', 'anote2', 'anote3', 'anote4']);
    const again = await db.query({ name: 'inv', text: SELECT_OWN, values: [A] } as never);
    t.is(again.rows.length, 4, 'the same name with the same text runs');
    await t.throwsAsync(db.query({ name: 'inv', text: '', values: [B] } as never), { instanceOf: TenantGuardError, message: /named statement sent without its text/ });
    await t.throwsAsync(db.query({ name: 'inv', text: '   ', values: [B] } as never), { instanceOf: TenantGuardError });
    await t.throwsAsync(db.query({ name: 'inv', text: 'SELECT note FROM invoices WHERE id = $1', values: [1] } as never), {
      instanceOf: TenantGuardError,
      message: /used before with another text/,
    });
    // A name never seen with its text: what the connection holds under it is unknown.
    await t.throwsAsync(db.query({ name: 'inv-raw', text: '', values: [B] } as never), { instanceOf: TenantGuardError });
    // The text a name was prepared with is checked with each execution's values.
    await t.throwsAsync(db.query({ name: 'inv', text: SELECT_OWN, values: [B] } as never), { instanceOf: TenantGuardError });
  });
});

test.serial('without the guard, a WITH HOLD cursor declared for B is fetched by the next transaction, of A, on the connection', async (t) => {
  const { pool, db } = t.context;
  await withTenantTransaction(pool, B, (tx) => tx.query(`DECLARE held CURSOR WITH HOLD FOR ${SELECT_OWN}`, [B]), { tenancy: db.config });
  const rows = await withTenantTransaction(pool, A, async (tx) => (await tx.query('FETCH ALL FROM held')).rows, { tenancy: db.config });
  t.true(showsB(rows));
  await pool.query('CLOSE held');
});

test.serial('DECLARE ... WITH HOLD is refused in tenant transactions: a later transaction of A finds no cursor of B', async (t) => {
  const { pool, db, guard } = t.context;
  const before = await rowsOfB(db);
  await withTenantTransaction(
    pool,
    B,
    async (tx) => {
      for (const sql of [`DECLARE held CURSOR WITH HOLD FOR ${SELECT_OWN}`, `DECLARE held NO SCROLL CURSOR WITH HOLD FOR ${SELECT_OWN}`, `DECLARE held BINARY CURSOR WITH HOLD FOR ${SELECT_OWN}`]) {
        await t.throwsAsync(tx.query(sql, [B]), { instanceOf: TenantGuardError, message: /WITH HOLD/ }, sql);
      }
      // Without HOLD it is checked as its query, and ends with the transaction.
      await tx.query(`DECLARE plain CURSOR FOR ${SELECT_OWN}`, [B]);
    },
    { tenancy: db.config, guard },
  );
  await t.throwsAsync(
    withTenantTransaction(pool, A, (tx) => tx.query('FETCH ALL FROM held'), { tenancy: db.config, guard }),
    { message: /cursor "held" does not exist/ },
  );
  await t.throwsAsync(
    withTenantTransaction(pool, A, (tx) => tx.query('FETCH ALL FROM plain'), { tenancy: db.config, guard }),
    { message: /cursor "plain" does not exist/ },
  );
  t.is(await rowsOfB(db), before);
});

test.serial('a pool whose sessions lex differently (standard_conforming_strings off for the role) gets every statement refused', async (t) => {
  const { db } = t.context;
  // (node-postgres always starts its sessions with client_encoding UTF8, so only a SET in the session could change that.)
  for (const options of ['-c standard_conforming_strings=off']) {
    const pool = db.pool(db.appUrl, { max: 1, options });
    const guard = await createQueryGuard({ pool, tenancy: db.config });
    t.truthy(guard.catalog.lexingMismatch, options);
    t.regex(guard.inspect('SELECT 1')[0]!.reason, /read differently from the guard's parser/);
    await t.throwsAsync(
      withTenantTransaction(pool, A, (tx) => tx.query(`SELECT * FROM invoices WHERE tenant_id = $1 AND note = 'a\\' AND note = ' OR true --'`, [A]), { tenancy: db.config, guard }),
      { instanceOf: TenantGuardError },
    );
  }
  t.is(t.context.guard.catalog.lexingMismatch, undefined);
});

test.serial('inside withTenantTransaction a statement name is not used: an empty text is sent as itself, not as the statement named before', async (t) => {
  const { pool, db, guard } = t.context;
  let first: unknown[] = [];
  await t.throwsAsync(
    withTenantTransaction(
      pool,
      A,
      async (tx) => {
        first = (await tx.query({ name: 'inv-tx', text: SELECT_OWN, values: [A] } as never)).rows;
        return (await tx.query({ name: 'inv-tx', text: '', values: [B] } as never)).rows;
      },
      { tenancy: db.config, guard, prepare: 'all' },
    ),
    { message: /bind message supplies 1 parameters, but prepared statement "lbmt_[0-9a-f]+" requires 0/ },
  );
  t.is(first.length, 4);
});
