/**
 * Named prepared statements through PgBouncer in transaction mode. A PgBouncer before 1.21, or a
 * newer one without `max_prepared_statements`, sends a client's Parse to one server connection and
 * its Bind to whichever comes next: the statements fail, loudly (42P05 / 26000), and never return
 * another tenant's rows. PgBouncer 1.21+ with `max_prepared_statements` routes them: the library's
 * default mode works, also while server connections are killed under load.
 */
import test from 'ava';
import pg from 'pg';
import { tenantQuery, withTenantTransaction, type PrepareMode } from '../src/index.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA, serverUrl, type TestDatabase } from './helpers/db.js';
import type { OrderRow } from './helpers/interleave.js';
import { MAX_PREPARED_STATEMENTS, pgBouncersUnderTest, startPgBouncer, type PgBouncerBinary } from './helpers/pgbouncer.js';

const PASSWORD = 'lbmt-test';
const POOL_CLIENTS = 16;
const SERVER_POOL_SIZE = 2;
/** Errors of a mis-routed named statement: 42P05 duplicate_prepared_statement, 26000 invalid_sql_statement_name. */
const MISROUTED = new Set(['42P05', '26000']);

let db: TestDatabase;
test.before(async () => {
  db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
});
test.after.always(async () => {
  await db?.drop();
});

interface Outcome {
  ok: number;
  failed: number;
  /** `code message` → how many. */
  errors: Map<string, number>;
  foreignRows: number;
  /** Rows a tenant had committed (the call returned) that a later read of that tenant lacked. */
  missingRows: number;
  kills: number;
  /** Tenant id → the items it wrote whose call returned (committed) / that it tried to write. */
  committed: Map<string, Set<string>>;
  attempted: Map<string, Set<string>>;
}

/**
 * `tenants` tenants at once, `rounds` rounds each: an INSERT by tenantQuery, a SELECT of all rows
 * by tenantQuery, a withTenantTransaction (INSERT + SELECT), and a count of other tenants' rows.
 * With `killEvery`, one server connection of the app role is terminated after every `killEvery`
 * completed operations.
 */
async function preparedRun(pool: pg.Pool, prepare: PrepareMode | undefined, tenants: number, rounds: number, killEvery = 0): Promise<Outcome> {
  const options = prepare ? { prepare } : {};
  const out: Outcome = { ok: 0, failed: 0, errors: new Map(), foreignRows: 0, missingRows: 0, kills: 0, committed: new Map(), attempted: new Map() };
  let done = 0;
  const kill = async () => {
    const { rows } = await db.superQuery<{ killed: boolean }>(
      `SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity
        WHERE datname = $1 AND usename = $2 ORDER BY random() LIMIT 1`,
      [db.name, db.config.roles.app],
    );
    if (rows[0]?.killed) out.kills += 1;
  };
  const record = async (attempt: () => Promise<void>) => {
    try {
      await attempt();
      out.ok += 1;
    } catch (error) {
      const e = error as { code?: string; message?: string };
      const key = `${e.code ?? '?'} ${String(e.message).replace(/"lbmt_[0-9a-f]+"/, '"lbmt_…"')}`;
      out.errors.set(key, (out.errors.get(key) ?? 0) + 1);
      out.failed += 1;
    }
    done += 1;
    if (killEvery && done % killEvery === 0) await kill();
  };
  await Promise.all(
    Array.from({ length: tenants }, async (_, n) => {
      const tenant = newTenantId();
      const committed = new Set<string>();
      const attempted = new Set<string>();
      out.committed.set(tenant, committed);
      out.attempted.set(tenant, attempted);
      const foreign = (rows: readonly OrderRow[]) => {
        out.foreignRows += rows.filter((r) => r.tenant_id !== tenant).length;
      };
      /** `rows` are all of the tenant's rows. */
      const check = (rows: readonly OrderRow[]) => {
        foreign(rows);
        const seen = new Set(rows.map((r) => r.item));
        out.missingRows += [...committed].filter((item) => !seen.has(item)).length;
      };
      for (let round = 0; round < rounds; round += 1) {
        const item = `p${n}-${round}`;
        attempted.add(item).add(`${item}-tx`);
        await record(async () => {
          const sql = 'INSERT INTO orders (tenant_id, item) VALUES ($1, $2) RETURNING tenant_id, item';
          foreign((await tenantQuery<OrderRow>(pool, tenant, sql, [tenant, item], options)).rows);
          committed.add(item);
        });
        await record(async () => check((await tenantQuery<OrderRow>(pool, tenant, 'SELECT tenant_id, item FROM orders', [], options)).rows));
        await record(async () => {
          const rows = await withTenantTransaction(
            pool,
            tenant,
            async (tx) => {
              await tx.query('INSERT INTO orders (tenant_id, item) VALUES ($1, $2)', [tenant, `${item}-tx`]);
              return (await tx.query<OrderRow>('SELECT tenant_id, item FROM orders')).rows;
            },
            options,
          );
          committed.add(`${item}-tx`);
          check(rows);
        });
        await record(async () => {
          const sql = 'SELECT count(*)::int AS n FROM orders WHERE tenant_id <> $1';
          out.foreignRows += (await tenantQuery<{ n: number }>(pool, tenant, sql, [tenant], options)).rows[0]!.n;
        });
      }
    }),
  );
  return out;
}

async function throughBouncer<T>(binary: PgBouncerBinary, maxPreparedStatements: number | undefined, fn: (pool: pg.Pool) => Promise<T>): Promise<T> {
  const app = db.config.roles.app;
  const bouncer = await startPgBouncer({ binary: binary.path, upstreamUrl: serverUrl(), users: [{ name: app, password: PASSWORD }], poolSize: SERVER_POOL_SIZE, maxPreparedStatements });
  const pool = new pg.Pool({ connectionString: bouncer.url(app, PASSWORD, db.name), max: POOL_CLIENTS });
  pool.on('error', () => undefined); // idle clients whose server connection was killed
  try {
    return await fn(pool);
  } finally {
    await pool.end();
    await bouncer.stop();
  }
}

const codes = (out: Outcome) => new Set([...out.errors.keys()].map((k) => k.split(' ')[0]!));

for (const binary of pgBouncersUnderTest(test, 'test/pgbouncer-prepared.test.ts')) {
  const unrouted = binary.routesPreparedStatements ? 'with max_prepared_statements = 0' : 'which cannot route them';
  for (const prepare of ['all', 'tenant'] as const) {
    test.serial(`PgBouncer ${binary.version} ${unrouted}: prepare '${prepare}' fails loudly with prepared-statement errors and never returns another tenant's rows`, async (t) => {
      const out = await throughBouncer(binary, binary.routesPreparedStatements ? 0 : undefined, (pool) => preparedRun(pool, prepare, 30, 6));
      t.log(`prepare '${prepare}' through PgBouncer ${binary.version}: ${out.ok} succeeded, ${out.failed} failed:`, Object.fromEntries(out.errors));
      t.is(out.foreignRows, 0, 'no statement returned another tenant’s row');
      t.is(out.missingRows, 0, 'no committed row went missing');
      t.true(out.failed > 0, 'the incompatibility is loud: statements fail');
      t.deepEqual([...codes(out)].filter((c) => !MISROUTED.has(c)), [], 'the failures are prepared-statement errors');
    });
  }
  if (!binary.routesPreparedStatements) continue;

  for (const prepare of [undefined, 'all'] as const) {
    test.serial(`PgBouncer ${binary.version} with max_prepared_statements: prepare ${prepare ? `'${prepare}'` : 'by default'} works, every tenant sees exactly its rows`, async (t) => {
      const out = await throughBouncer(binary, MAX_PREPARED_STATEMENTS, (pool) => preparedRun(pool, prepare, 30, 6));
      t.deepEqual(Object.fromEntries(out.errors), {}, 'no statement failed');
      t.is(out.ok, 30 * 6 * 4);
      t.is(out.foreignRows, 0);
      t.is(out.missingRows, 0);
    });
  }

  test.serial(`PgBouncer ${binary.version} with max_prepared_statements: 5,000 interleaved operations while server connections are killed: no foreign row, no lost write`, async (t) => {
    const out = await throughBouncer(binary, MAX_PREPARED_STATEMENTS, (pool) => preparedRun(pool, undefined, 25, 50, 200));
    t.log(`${out.ok} succeeded, ${out.failed} failed, ${out.kills} server connections killed:`, Object.fromEntries(out.errors));
    t.is(out.ok + out.failed, 5_000, 'every operation ran');
    t.true(out.kills >= 10, `${out.kills} server connections were killed`);
    t.is(out.foreignRows, 0, 'no operation saw another tenant’s row');
    t.is(out.missingRows, 0, 'every row a call reported committed was seen by the tenant’s later reads');
    const refused = [...codes(out)].filter((c) => c === '42501' || MISROUTED.has(c));
    t.deepEqual(refused, [], 'no RLS refusal (a wrong tenant) and no mis-routed statement: failures are killed connections only');
    // What is stored, seen directly as the superuser: every committed write, each under its writer.
    const { rows } = await db.superQuery<OrderRow>('SELECT tenant_id::text, item FROM orders WHERE tenant_id = ANY($1::uuid[])', [[...out.attempted.keys()]]);
    const stored = new Map<string, Set<string>>();
    for (const row of rows) stored.set(row.tenant_id, (stored.get(row.tenant_id) ?? new Set()).add(row.item));
    const lost = [...out.committed].flatMap(([tenant, items]) => [...items].filter((item) => !stored.get(tenant)?.has(item)));
    const stray = rows.filter((row) => !out.attempted.get(row.tenant_id)?.has(row.item));
    t.deepEqual(lost, [], 'every write whose call returned is stored');
    t.deepEqual(stray, [], 'every stored row was written by its own tenant');
  });
}
