import diagnostics from 'node:diagnostics_channel';
import { setTimeout as delay } from 'node:timers/promises';
import anyTest, { type TestFn } from 'ava';
import { fingerprintSync } from 'libpg-query';
import { defineTenancy, runWithTenantContext, TenantError, TenantGuardError, tenantQuery, withTenantTransaction, type StatementGuard } from '../src/index.js';
import { createQueryGuard, GUARD_CHANNELS, withAdminBypass, type GuardBypassEvent, type GuardViolationEvent, type TenantQueryGuard } from '../src/guard/index.js';
import { createTestDatabase, newTenantId, type TestDatabase } from './helpers/db.js';
import { observePool } from './helpers/observe.js';

const test = anyTest as TestFn<{ db: TestDatabase; guard: TenantQueryGuard; a: string; b: string }>;

// notes: a legacy table outside RLS (guarded). orders: under RLS (not guarded). The rest probe
// what "protected by RLS" means to the catalog reader.
const SCHEMA = `
  CREATE TABLE notes (tenant_id uuid NOT NULL, id int NOT NULL, body text, PRIMARY KEY (tenant_id, id));
  CREATE TABLE orders (tenant_id uuid NOT NULL, id int GENERATED ALWAYS AS IDENTITY, item text, PRIMARY KEY (tenant_id, id));
  CREATE TABLE plans (id int PRIMARY KEY, name text);
  CREATE TABLE rls_not_forced (tenant_id uuid, x int);
  ALTER TABLE rls_not_forced ENABLE ROW LEVEL SECURITY;
  CREATE POLICY p ON rls_not_forced AS RESTRICTIVE USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
  CREATE TABLE permissive_only (tenant_id uuid, x int);
  ALTER TABLE permissive_only ENABLE ROW LEVEL SECURITY;
  ALTER TABLE permissive_only FORCE ROW LEVEL SECURITY;
  CREATE POLICY p ON permissive_only USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
  CREATE TABLE schema_migrations (tenant_id uuid, name text);
  CREATE VIEW notes_view AS SELECT tenant_id, body FROM notes;
  CREATE VIEW note_count AS SELECT count(*) AS n FROM notes_view;
  CREATE SCHEMA legacy;
  CREATE TABLE legacy.accounts (tenant_id uuid NOT NULL, id int, name text);
  CREATE TABLE public.accounts (id int, name text);
  CREATE TABLE later (tenant_id uuid NOT NULL, id int);
`;

test.before(async (t) => {
  const db = await createTestDatabase({ schema: SCHEMA, tenancy: { tables: ['orders'] }, appPoolMax: 4 });
  const app = db.config.roles.app;
  await db.superQuery(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public, legacy TO ${app}; GRANT USAGE ON SCHEMA legacy TO ${app}`);
  const guard = await createQueryGuard({ pool: db.appPool, tenancy: db.config, exemptTables: ['schema_migrations'] });
  t.context = { db, guard, a: newTenantId(), b: newTenantId() };
});

test.after.always(async (t) => {
  await t.context.db?.drop();
});

const countNotes = async (db: TestDatabase, tenant: string) =>
  Number((await db.superQuery('SELECT count(*) AS n FROM notes WHERE tenant_id = $1', [tenant])).rows[0].n);

test('the catalog guards tables carrying the tenant column that RLS (enabled + forced + restrictive) does not protect', (t) => {
  const guarded = [...t.context.guard.catalog.tables.keys()].sort();
  t.deepEqual(guarded, ['legacy.accounts', 'public.later', 'public.notes', 'public.notes_view', 'public.permissive_only', 'public.rls_not_forced']);
  t.is(t.context.guard.catalog.tables.get('public.notes')!.position, 1);
});

test('a view over a guarded table without a tenant column of its own is refused outright', (t) => {
  const { guard } = t.context;
  t.deepEqual([...guard.catalog.blindViews.values()], [{ schema: 'public', table: 'note_count', reads: 'public.notes' }]);
  const [violation] = guard.inspect('SELECT n FROM note_count');
  t.is(violation?.table, 'public.note_count');
  t.regex(violation!.reason, /view over the guarded table public\.notes without a tenant column/);
});

test('guardRlsTables guards the RLS tables too (defence in depth)', async (t) => {
  const guard = await createQueryGuard({ pool: t.context.db.appPool, tenancy: t.context.db.config, guardRlsTables: true });
  t.true(guard.catalog.tables.get('public.orders')?.rls);
  t.true(guard.catalog.tables.has('public.schema_migrations'));
  t.is(guard.inspect('SELECT * FROM orders').length, 1);
});

test('a catalog read by a role that bypasses RLS guards the RLS tables too (RLS does not protect that role)', async (t) => {
  const guard = await createQueryGuard({ pool: t.context.db.adminPool, tenancy: t.context.db.config });
  t.false(guard.catalog.tables.get('public.orders')?.rls);
});

test('unqualified names resolve through the search path of the pool the catalog is read with', async (t) => {
  const { db } = t.context;
  const legacyFirst = db.pool(db.appUrl, { max: 1, options: '-c search_path=legacy,public' });
  const legacyGuard = await createQueryGuard({ pool: legacyFirst, tenancy: db.config });
  t.deepEqual(legacyGuard.catalog.searchPath.filter((s) => s !== 'pg_catalog'), ['legacy', 'public']);
  t.is(legacyGuard.inspect('SELECT name FROM accounts')[0]?.table, 'legacy.accounts');
  t.deepEqual(legacyGuard.inspect('SELECT name FROM public.accounts'), []);
  // The default path ("$user", public) finds public.accounts, which has no tenant column.
  t.deepEqual(t.context.guard.inspect('SELECT name FROM accounts'), []);
  t.is(t.context.guard.inspect('SELECT name FROM legacy.accounts')[0]?.table, 'legacy.accounts');
});

test('tenantQuery with the guard refuses an unsafe INSERT before anything is sent', async (t) => {
  const { db, guard } = t.context;
  const [a, b] = [newTenantId(), newTenantId()];
  const { pool, counts } = await observePool(db.appPool);
  const insert = `INSERT INTO notes (tenant_id, id, body) VALUES ($1, 1, 'planted')`;
  const error = await t.throwsAsync(tenantQuery(pool, a, insert, [b], { tenancy: db.config, guard }), { instanceOf: TenantGuardError });
  t.is(error.table, 'public.notes');
  t.is(counts.connects, 0, 'no connection was even taken');
  t.is(await countNotes(db, b), 0, 'the INSERT that would have succeeded left no row');
  await tenantQuery(pool, a, insert, [a], { tenancy: db.config, guard });
  t.is(await countNotes(db, a), 1, 'the same INSERT for the current tenant goes through');
});

test('withTenantTransaction with the guard runs safe statements and refuses an unsafe one, rolling back', async (t) => {
  const { db, guard } = t.context;
  const a = newTenantId();
  await db.superQuery(`INSERT INTO notes (tenant_id, id, body) VALUES ($1, 1, 'kept'), ($2, 1, 'other tenant')`, [a, t.context.b]);
  await t.throwsAsync(
    withTenantTransaction(
      db.appPool,
      a,
      async (tx) => {
        await tx.query(`INSERT INTO notes (tenant_id, id, body) VALUES ($1, 2, 'kept?')`, [tx.tenantId]);
        await tx.query('SELECT body FROM notes'); // no tenant filter: refused
      },
      { tenancy: db.config, guard },
    ),
    { instanceOf: TenantGuardError, message: /public\.notes is read without a tenant filter/ },
  );
  t.is(Number((await db.superQuery(`SELECT count(*) AS n FROM notes WHERE id = 2 AND body = 'kept?'`)).rows[0].n), 0);
  const rows = await withTenantTransaction(
    db.appPool,
    a,
    async (tx) => (await tx.query('SELECT body FROM notes WHERE tenant_id = $1 ORDER BY id', [tx.tenantId])).rows,
    { tenancy: db.config, guard },
  );
  t.deepEqual(rows, [{ body: 'kept' }], 'the rolled-back INSERT left nothing, the safe SELECT sees the tenant\'s row only');
});

test('inside a tenant transaction COMMIT, SET ROLE and set_config of the tenant are refused and the transaction goes on', async (t) => {
  const { db, guard, a, b } = t.context;
  await withTenantTransaction(
    db.appPool,
    a,
    async (tx) => {
      for (const sql of ['COMMIT', 'ROLLBACK', 'SET ROLE postgres', 'RESET ALL', `SELECT set_config('app.tenant_id', $1, true)`]) {
        await t.throwsAsync(tx.query(sql, sql.includes('$1') ? [b] : []), { instanceOf: TenantGuardError }, sql);
      }
      await tx.query(`INSERT INTO notes (tenant_id, id, body) VALUES ($1, 3, 'after refusals')`, [tx.tenantId]);
      const setting = await tx.query(`SELECT current_setting('app.tenant_id') AS t`);
      t.is(setting.rows[0].t, a);
    },
    { tenancy: db.config, guard },
  );
  t.is(Number((await db.superQuery('SELECT count(*) AS n FROM notes WHERE id = 3')).rows[0].n), 1);
});

test('TenantGuardError names the table, the reason and the offset, and never the parameter values', (t) => {
  const { guard, a, b } = t.context;
  const error = t.throws(() => guard.check('SELECT * FROM plans p JOIN notes n ON n.id = p.id WHERE n.tenant_id = $1', [b], a), {
    instanceOf: TenantGuardError,
  });
  t.true(error instanceof TenantError);
  t.is(error.code, 'LBMT_GUARD_REFUSED');
  t.is(error.status, 500);
  t.is(error.table, 'public.notes');
  t.is(error.location, 27);
  t.regex(error.reason, /\$1/);
  t.false(error.message.includes(b), 'the message does not echo values');
  t.regex(error.message, /table public\.notes, at offset 27/);
});

test('strictMode false reports through onViolation and the diagnostics channel, and the statement runs', async (t) => {
  const { db, a } = t.context;
  const b = newTenantId();
  const seen: GuardViolationEvent[] = [];
  const published: GuardViolationEvent[] = [];
  const guard = await createQueryGuard({ pool: db.appPool, tenancy: db.config, strictMode: false, onViolation: (e) => seen.push(e) });
  const listener = (message: unknown) => published.push(message as GuardViolationEvent);
  diagnostics.subscribe(GUARD_CHANNELS.blocked, listener);
  try {
    await tenantQuery(db.appPool, a, `INSERT INTO notes (tenant_id, id, body) VALUES ($1, 4, 'reported')`, [b], { tenancy: db.config, guard });
  } finally {
    diagnostics.unsubscribe(GUARD_CHANNELS.blocked, listener);
  }
  t.is(await countNotes(db, b), 1, 'the statement ran');
  t.is(seen.length, 1);
  t.false(seen[0]!.blocked);
  t.is(seen[0]!.tenantId, a);
  t.is(seen[0]!.violations[0]!.table, 'public.notes');
  t.true(published.some((e) => e.text.includes("'reported'")));
});

test('guard.wrap(pool) checks every statement with the tenant of TenantContext', async (t) => {
  const { db, guard, b } = t.context;
  const a = newTenantId();
  await db.superQuery(`INSERT INTO notes (tenant_id, id, body) VALUES ($1, 10, 'x'), ($1, 11, 'y')`, [a]);
  const wrapped = guard.wrap(db.appPool);
  await runWithTenantContext(a, async () => {
    const ok = await wrapped.query('SELECT body FROM notes WHERE tenant_id = $1 ORDER BY id', [a]);
    t.deepEqual(ok.rows, [{ body: 'x' }, { body: 'y' }]);
    await t.throwsAsync(wrapped.query('SELECT body FROM notes WHERE tenant_id = $1', [b]), { instanceOf: TenantGuardError });
    await t.throwsAsync(wrapped.query({ text: 'SELECT body FROM notes' }), { instanceOf: TenantGuardError });
    const client = await wrapped.connect();
    try {
      t.is((await client.query({ text: 'SELECT count(*)::int AS n FROM notes WHERE tenant_id = $1', values: [a.toUpperCase()] })).rows.length, 1);
      await t.throwsAsync(client.query('DELETE FROM notes'), { instanceOf: TenantGuardError });
    } finally {
      client.release();
    }
  });
  // No tenant in context: tables without a tenant column are fine, tenant filters cannot be met.
  t.is((await wrapped.query('SELECT count(*)::int AS n FROM plans')).rows[0].n, 0);
  await t.throwsAsync(wrapped.query('SELECT body FROM notes WHERE tenant_id = $1', [a]), { message: /there is no current tenant/ });
  t.is(await countNotes(db, a), 2, 'the refused DELETE sent nothing');
});

test('withAdminBypass turns the checks off inside fn only, and reports every statement it let through', async (t) => {
  const { db, a } = t.context;
  const bypassed: GuardBypassEvent[] = [];
  const published: GuardBypassEvent[] = [];
  const guard = await createQueryGuard({ pool: db.appPool, tenancy: db.config, onBypass: (e) => bypassed.push(e) });
  const listener = (message: unknown) => published.push(message as GuardBypassEvent);
  diagnostics.subscribe(GUARD_CHANNELS.bypass, listener);
  const marker = `bypass-${newTenantId()}`;
  await db.superQuery(`INSERT INTO notes (tenant_id, id, body) VALUES ($1, 20, $3), ($2, 20, $3)`, [newTenantId(), newTenantId(), marker]);
  const text = `SELECT count(*)::int AS n FROM notes WHERE body = '${marker}'`;
  try {
    const count = await withAdminBypass(
      async () => (await tenantQuery(db.appPool, a, text, [], { tenancy: db.config, guard })).rows[0].n,
      { reason: 'nightly report' },
    );
    t.is(count, 2, 'the unfiltered statement ran and read both tenants\' rows');
  } finally {
    diagnostics.unsubscribe(GUARD_CHANNELS.bypass, listener);
  }
  t.deepEqual(bypassed, [{ text, tenantId: a, reason: 'nightly report' }]);
  t.is(published.length, 1);
  t.throws(() => guard.check('SELECT count(*) FROM notes', [], a), { instanceOf: TenantGuardError }, 'checked again after fn');
});

test('a bypass in one request never leaks to requests running at the same time', async (t) => {
  const { guard, a } = t.context;
  const unsafe = 'UPDATE notes SET body = NULL';
  const outcomes = await Promise.all(
    Array.from({ length: 200 }, async (_, i) => {
      const bypass = i % 3 === 0;
      const work = async () => {
        const results: boolean[] = [];
        for (let step = 0; step < 3; step += 1) {
          // Interleave through timers, the microtask queue and immediates.
          if (step === 0) await delay(i % 7);
          else if (step === 1) await Promise.resolve();
          else await new Promise<void>((resolve) => setImmediate(resolve));
          results.push(passes(() => guard.check(unsafe, [], a)));
        }
        return results;
      };
      return { bypass, results: bypass ? await withAdminBypass(work) : await work() };
    }),
  );
  for (const { bypass, results } of outcomes) t.deepEqual(results, [bypass, bypass, bypass]);
  // A callback scheduled from inside a bypass belongs to the bypass; one scheduled outside does not.
  let inside: boolean | undefined;
  await withAdminBypass(() => new Promise<void>((resolve) => setTimeout(() => ((inside = passes(() => guard.check(unsafe, [], a))), resolve()), 1)));
  t.true(inside);
  t.false(passes(() => guard.check(unsafe, [], a)));
});

function passes(fn: () => void): boolean {
  try {
    fn();
    return true;
  } catch (error) {
    if (error instanceof TenantGuardError) return false;
    throw error;
  }
}

test('verdicts are cached by exact text, never by fingerprint (which ignores aliases); values are checked every time', (t) => {
  const { guard, a, b } = t.context;
  const safeText = 'SELECT * FROM notes a, plans b WHERE a.tenant_id = $1';
  const swapped = 'SELECT * FROM notes b, plans a WHERE a.tenant_id = $1';
  t.is(fingerprintSync(safeText), fingerprintSync(swapped), 'one fingerprint for both');
  t.deepEqual(guard.inspect(safeText, [a], a), []);
  t.is(guard.inspect(swapped, [a], a)[0]?.table, 'public.notes');
  t.is(guard.verdict(safeText), guard.verdict(safeText), 'the second lookup is the cached verdict');
  t.deepEqual(guard.verdict(safeText).requirements.map((r) => r.candidates), [[{ kind: 'param', index: 1 }]]);
  t.notThrows(() => guard.check(safeText, [a], a));
  t.throws(() => guard.check(safeText, [b], a), { instanceOf: TenantGuardError });
});

test('refresh() re-reads the catalog after a migration and forgets cached verdicts', async (t) => {
  const { db, a } = t.context;
  const guard = await createQueryGuard({ pool: db.appPool, tenancy: db.config });
  t.is(guard.inspect('SELECT * FROM later', [], a).length, 1);
  await db.superQuery(`
    ALTER TABLE later ENABLE ROW LEVEL SECURITY;
    ALTER TABLE later FORCE ROW LEVEL SECURITY;
    CREATE POLICY isolation ON later AS RESTRICTIVE USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
  `);
  t.is(guard.inspect('SELECT * FROM later', [], a).length, 1, 'still the cached verdict');
  await guard.refresh();
  t.false(guard.catalog.tables.has('public.later'));
  t.deepEqual(guard.inspect('SELECT * FROM later', [], a), []);
});

test('a guard given tables by hand needs no database, and options are validated', async (t) => {
  const guard = await createQueryGuard({ tables: [{ name: 'billing.invoices', tenantColumn: 'org_id' }, { name: 'notes' }] });
  t.is(guard.inspect('SELECT * FROM billing.invoices WHERE tenant_id = $1', ['x'], 'x')[0]?.table, 'billing.invoices');
  const statementGuard: StatementGuard = guard;
  t.notThrows(() => statementGuard.check('SELECT * FROM billing.invoices WHERE org_id = $1', [t.context.a], t.context.a));
  await t.throwsAsync(createQueryGuard({} as never), { instanceOf: TypeError });
  await t.throwsAsync(createQueryGuard({ tables: [], cacheSize: 0 }), { message: /`cacheSize` must be a positive integer/ });
});

test('tenant values compare as PostgreSQL compares them, for every tenant id type', async (t) => {
  const bigint = await createQueryGuard({ tables: [{ name: 'notes' }], tenancy: defineTenancy({ tenantIdType: 'bigint' }) });
  t.deepEqual(bigint.inspect('SELECT * FROM notes WHERE tenant_id = $1', [42n], '42'), []);
  t.deepEqual(bigint.inspect('SELECT * FROM notes WHERE tenant_id = $1', ['0042'], '42'), []);
  t.deepEqual(bigint.inspect('SELECT * FROM notes WHERE tenant_id = 42', [], '42'), []);
  t.deepEqual(bigint.inspect('SELECT * FROM notes WHERE tenant_id = 9999999999', [], '9999999999'), []);
  t.is(bigint.inspect('SELECT * FROM notes WHERE tenant_id = 43', [], '42').length, 1);
  const text = await createQueryGuard({ tables: [{ name: 'notes' }], tenancy: defineTenancy({ tenantIdType: 'text' }) });
  t.deepEqual(text.inspect(`SELECT * FROM notes WHERE tenant_id = 'acme'`, [], 'acme'), []);
  t.is(text.inspect(`SELECT * FROM notes WHERE tenant_id = 'ACME'`, [], 'acme').length, 1, 'text compares byte for byte');
  t.is(text.inspect('SELECT * FROM notes WHERE tenant_id = $1', ['Acme'], 'acme').length, 1);
  const uuid = await createQueryGuard({ tables: [{ name: 'notes' }] });
  const id = t.context.a;
  t.deepEqual(uuid.inspect('SELECT * FROM notes WHERE tenant_id = $1', [`{${id.toUpperCase()}}`], id), []);
  t.is(uuid.inspect('SELECT * FROM notes WHERE tenant_id = $1', [null], id).length, 1);
  t.is(uuid.inspect('SELECT * FROM notes WHERE tenant_id = $1', [], id).length, 1, 'a missing value is not the tenant');
});
