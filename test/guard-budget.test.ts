import anyTest, { type TestFn } from 'ava';
import { TenantGuardError, withTenantTransaction } from '../src/index.js';
import { createQueryGuard } from '../src/guard/index.js';
import { A, createGuardFixture, rowsOfB, type GuardFixture } from './guard-fixture.js';

/**
 * Issue 9, robustness: a first verdict is synchronous, so its cost is bounded. Texts longer than
 * `maxTextLength` are refused before parsing; an analysis that would exceed `maxAnalysisSteps` is
 * abandoned and refused (fail closed), both with the code LBMT_GUARD_TOO_COMPLEX. These tests
 * assert that generated 500-table statements finish and are refused, not how fast (speed is
 * measured in bench/guard.ts).
 */

const test = anyTest as TestFn<GuardFixture>;

test.before(async (t) => {
  t.context = await createGuardFixture();
});

test.after.always(async (t) => {
  await t.context.db?.drop();
});

const TABLES = Array.from({ length: 500 }, (_, i) => ({ name: `t${i}` }));

/** `t0 JOIN t1 ON t1.tenant_id = t0.tenant_id ...`: every table bound through the chain. */
function innerChain(n: number): string {
  let sql = 'SELECT * FROM t0 a0';
  for (let i = 1; i < n; i += 1) sql += ` JOIN t${i} a${i} ON a${i}.tenant_id = a${i - 1}.tenant_id AND a${i}.id = a${i - 1}.ref`;
  return `${sql} WHERE a0.tenant_id = $1`;
}

/** A chain of LEFT JOINs, each table also filtered in the WHERE: its facts are quadratic in size. */
function leftChain(n: number): string {
  let sql = 'SELECT * FROM t0 a0';
  for (let i = 1; i < n; i += 1) sql += ` LEFT JOIN t${i} a${i} ON a${i}.tenant_id = a${i - 1}.tenant_id`;
  return `${sql} WHERE ${Array.from({ length: n }, (_, i) => `a${i}.tenant_id = $1`).join(' AND ')}`;
}

/** Subqueries nested 500 deep, each correlated to the one around it. */
function nestedExists(n: number): string {
  let sql = 'SELECT 1 FROM t0 a0 WHERE a0.tenant_id = a1.tenant_id';
  for (let i = 1; i < n; i += 1) sql = `SELECT 1 FROM t${i} a${i} WHERE a${i}.tenant_id = ${i + 1 < n ? `a${i + 1}.tenant_id` : '$1'} AND EXISTS (${sql})`;
  return sql;
}

test('deeply nested expressions are analysed, and beyond what the parser takes the statement is refused', async (t) => {
  const guard = await createQueryGuard({ tables: [{ name: 'notes' }], maxTokens: 100_000 });
  const nested = (depth: number) => `${'(1 + '.repeat(depth)}1${')'.repeat(depth)}`;
  const a = A;
  t.deepEqual(guard.inspect(`SELECT * FROM notes WHERE tenant_id = $1 AND id = ${nested(2000)}`, [a], a), []);
  t.is(guard.inspect(`SELECT * FROM notes WHERE id = ${nested(2000)}`, [a], a)[0]?.table, 'public.notes');
  const deep = `SELECT * FROM notes WHERE tenant_id = $1 AND id = ${nested(20000)}`;
  const roomy = await createQueryGuard({ tables: [{ name: 'notes' }], maxTextLength: 1_000_000, maxTokens: 10_000_000 });
  t.regex(roomy.inspect(deep, [a], a)[0]!.reason, /does not parse/);
  // With the default maxTextLength it is not even parsed (parsing holds the event loop).
  const [tooLong] = guard.inspect(deep, [a], a);
  t.is(tooLong?.code, 'LBMT_GUARD_TOO_COMPLEX');
  t.is(t.throws(() => guard.check(deep, [a], a), { instanceOf: TenantGuardError })?.code, 'LBMT_GUARD_TOO_COMPLEX');
});

test('a 500-table statement longer than maxTextLength is refused before it is parsed', async (t) => {
  const guard = await createQueryGuard({ tables: TABLES });
  const sql = innerChain(500);
  t.true(sql.length > 32_768);
  const [violation, ...rest] = guard.inspect(sql, [A], A);
  t.deepEqual(rest, []);
  t.is(violation!.code, 'LBMT_GUARD_TOO_COMPLEX');
  t.regex(violation!.reason, /longer than maxTextLength \(32768 characters\)/);
  t.not(guard.verdict(sql), guard.verdict(sql), 'a text past maxTextLength is not kept in the cache');
  const short = innerChain(3);
  t.is(guard.verdict(short), guard.verdict(short), 'a text within it is');
});

test('a statement of more than maxTokens tokens is refused before it is parsed; literals and comments do not count', async (t) => {
  const guard = await createQueryGuard({ tables: TABLES });
  const sql = innerChain(120);
  t.true(sql.length < 32_768, 'within maxTextLength: the token count refuses it');
  const [violation, ...rest] = guard.inspect(sql, [A], A);
  t.deepEqual(rest, []);
  t.is(violation!.code, 'LBMT_GUARD_TOO_COMPLEX');
  t.regex(violation!.reason, /more than maxTokens \(2000\) tokens/);
  t.deepEqual(guard.inspect(innerChain(60), [A], A), [], 'a 60-table chain is within it');
  // 30 KB of literal, quoted identifier and comments: a handful of tokens to the parser too.
  const literal = `SELECT 'a''${'x'.repeat(10_000)}' AS "q""${'y'.repeat(5_000)}", $$${'z'.repeat(5_000)}$$ /* ${'c '.repeat(2_000)} */ FROM t0 -- ${'d'.repeat(2_000)}\n WHERE tenant_id = $1`;
  t.deepEqual(guard.inspect(literal, [A], A), []);
  t.is(guard.inspect(literal.replace('WHERE tenant_id = $1', ''), [A], A)[0]?.table, 'public.t0', 'and still analysed');
  const lists = await createQueryGuard({ tables: TABLES, maxTokens: 100 });
  t.is(lists.inspect(`SELECT * FROM t0 WHERE tenant_id = $1 AND id IN (${Array.from({ length: 60 }, (_, i) => i).join(', ')})`, [A], A)[0]?.code, 'LBMT_GUARD_TOO_COMPLEX');
  t.deepEqual(lists.inspect('SELECT * FROM t0 WHERE tenant_id = $1 AND id = ANY($2)', [A, [1, 2, 3]], A), [], 'the same list as one array parameter');
  await t.throwsAsync(createQueryGuard({ tables: TABLES, maxTokens: 0 }), { instanceOf: TypeError });
  // The count reads strings as the server does: an escape string's \' does not end it (so a
  // `--` after it is not a comment), a standard string's backslash is an ordinary character.
  const list = Array.from({ length: 3000 }, (_, i) => i).join(',');
  for (const sql of [`SELECT E'\\' --', ${list} FROM t0 WHERE tenant_id = $1`, `SELECT 'x\\', ${list} FROM t0 WHERE tenant_id = $1 --'`]) {
    t.regex(guard.inspect(sql, [A], A)[0]?.reason ?? '', /more than maxTokens/, sql.slice(0, 30));
  }
});

test('500-table statements past maxAnalysisSteps finish, refused with LBMT_GUARD_TOO_COMPLEX', async (t) => {
  const guard = await createQueryGuard({ tables: TABLES, maxTextLength: 1_000_000, maxTokens: 10_000_000 });
  for (const sql of [leftChain(500), nestedExists(500)]) {
    const error = t.throws(() => guard.check(sql, [A], A), { instanceOf: TenantGuardError });
    t.is(error?.code, 'LBMT_GUARD_TOO_COMPLEX');
    t.regex(error!.message, /too complex to check within maxAnalysisSteps \(50000\)|nested too deeply/);
    t.is(error?.violations.length, 1);
  }
  t.regex(guard.inspect(leftChain(500), [A], A)[0]!.reason, /maxAnalysisSteps \(50000\)/);
});

test('a raised budget analyses the same 500-table LEFT JOIN chain to the end (the budget, not the size, refused it)', async (t) => {
  const guard = await createQueryGuard({ tables: TABLES, maxTextLength: 1_000_000, maxTokens: 10_000_000, maxAnalysisSteps: 100_000_000 });
  t.deepEqual(guard.inspect(leftChain(500), [A], A), []);
  t.deepEqual(guard.inspect(nestedExists(100), [A], A), []);
});

test('a 500-table inner join chain within maxTextLength is analysed to the end: bound, or each table refused', async (t) => {
  const guard = await createQueryGuard({ tables: TABLES, maxTextLength: 1_000_000, maxTokens: 10_000_000 });
  t.deepEqual(guard.inspect(innerChain(500), [A], A), []);
  t.is(guard.inspect(innerChain(500).replace('WHERE a0.tenant_id = $1', 'WHERE a0.id = $1'), [A], A).length, 500);
});

test('a 300-table chain stays within the default analysis budget and is accepted', async (t) => {
  const guard = await createQueryGuard({ tables: TABLES, maxTokens: 100_000 });
  t.deepEqual(guard.inspect(innerChain(300), [A], A), []);
});

test('refusing a long non-ASCII text with many violations finishes, with character offsets', async (t) => {
  const guard = await createQueryGuard({ tables: TABLES, maxTextLength: 2_000_000, maxTokens: 10_000_000, maxAnalysisSteps: 10_000_000 });
  const items = Array.from({ length: 30_000 }, (_, i) => `t${i % 500} /* é€😀 */ x${i}`);
  const sql = `SELECT 'é€😀' FROM ${items.join(', ')}`;
  t.true(Buffer.byteLength(sql) > 780_000);
  const violations = guard.inspect(sql, [A], A);
  t.is(violations.length, 30_000);
  const last = violations.at(-1)!;
  t.is(sql.slice(last.location, last.location + 4), `t${29_999 % 500}`);
  t.is(sql.slice(violations[1]!.location, violations[1]!.location + 3), 't1 ');
});

test('run for real: a refused 500-table statement sends nothing, and the transaction goes on', async (t) => {
  const fixture = t.context;
  const before = await rowsOfB(fixture.db);
  const sql = `DELETE FROM invoices WHERE tenant_id = $1 AND id IN (${leftChain(500).replace('SELECT *', 'SELECT 1').replace(/t(\d+) a/g, 'invoices a')})`;
  const guard = await createQueryGuard({ pool: fixture.db.appPool, tenancy: fixture.db.config, maxTextLength: 1_000_000, maxTokens: 10_000_000 });
  const count = await withTenantTransaction(
    fixture.db.appPool,
    A,
    async (tx) => {
      await t.throwsAsync(tx.query(sql, [A]), { instanceOf: TenantGuardError, message: /too complex/ });
      return (await tx.query('SELECT count(*)::int AS n FROM invoices WHERE tenant_id = $1', [A])).rows[0].n;
    },
    { tenancy: fixture.db.config, guard },
  );
  t.is(count, 4);
  t.is(await rowsOfB(fixture.db), before);
});
