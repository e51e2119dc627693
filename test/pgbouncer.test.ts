/**
 * Tenant isolation through PgBouncer in TRANSACTION pooling mode (PITFALLS 6-8): many clients share
 * a few server connections, and PgBouncer never resets a server connection between clients.
 *
 * PgBouncer is a system binary (.ci/run installs Debian's). Without it these tests are skipped,
 * visibly, outside CI; in CI (CI=true) its absence fails the run.
 */
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import pg from 'pg';
import { tenantQuery, withTenantTransaction } from '../src/index.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA, serverUrl, type TestDatabase } from './helpers/db.js';
import { findPgBouncer, startPgBouncer, type PgBouncer } from './helpers/pgbouncer.js';

interface Context {
  db: TestDatabase;
  bouncer: PgBouncer;
  /** 16 clients of the app role through `bouncer` (2 server connections per database and user). */
  pool: pg.Pool;
  /** A seeded tenant and how many rows it has (for the leak demonstrations). */
  seeded: { id: string; rows: number };
  /** Set by the concurrent run: tenant id → the items it wrote. */
  written?: Map<string, Set<string>>;
}

const test = anyTest as TestFn<Context>;

const PASSWORD = 'lbmt-test'; // test/helpers/db.ts gives every role of a test database this password
const POOL_CLIENTS = 16;
const SERVER_POOL_SIZE = 2;
const TENANTS = 50;
const ROUNDS = 20;
const NO_PREPARE = { prepare: false } as const;

const inCi = Boolean(process.env.CI) && process.env.CI !== 'false' && process.env.CI !== '0';
const binary = findPgBouncer();
const serial = binary ? test.serial : test.skip;

if (!binary) {
  if (inCi) {
    test('pgbouncer is installed in CI, where .ci/run installs it', (t) => {
      t.fail('the pgbouncer binary was not found on PATH or in /usr/sbin; .ci/run must install it (apt-get install -y pgbouncer)');
    });
  } else {
    console.warn('test/pgbouncer.test.ts: SKIPPED — pgbouncer is not installed (apt-get install -y pgbouncer)');
  }
}

test.before(async (t) => {
  if (!binary) return;
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  const app = db.config.roles.app;
  const bouncer = await startPgBouncer({
    upstreamUrl: serverUrl(),
    users: [{ name: app, password: PASSWORD }],
    poolSize: SERVER_POOL_SIZE,
  });
  const pool = db.pool(bouncer.url(app, PASSWORD, db.name), { max: POOL_CLIENTS });
  const seeded = { id: newTenantId(), rows: 3 };
  await db.superQuery(`INSERT INTO orders (tenant_id, item) SELECT $1, 'seed-' || g FROM generate_series(1, $2) g`, [seeded.id, seeded.rows]);
  t.context = { db, bouncer, pool, seeded };
});

test.after.always(async (t) => {
  await t.context.db?.drop(); // ends the pools first
  await t.context.bouncer?.stop();
});

interface OrderRow {
  tenant_id: string;
  item: string;
}

/** Records one check; a failed one is kept with what was seen. */
class Checks {
  count = 0;
  rows = 0;
  readonly failures: string[] = [];
  expect(ok: boolean, what: () => string): void {
    this.count += 1;
    if (!ok && this.failures.length < 50) this.failures.push(what());
  }
  /** `rows` are exactly the tenant's `expected` items, all carrying its id. */
  expectRows(tenant: string, rows: readonly OrderRow[], expected: ReadonlySet<string>, where: string): void {
    this.rows += rows.length;
    const foreign = rows.filter((r) => r.tenant_id !== tenant);
    this.expect(foreign.length === 0, () => `${where}: ${foreign.length} row(s) of other tenants, e.g. ${foreign[0]?.item}`);
    const items = new Set(rows.map((r) => r.item));
    const same = items.size === expected.size && rows.length === expected.size && [...expected].every((i) => items.has(i));
    this.expect(same, () => `${where}: saw ${rows.length} row(s) [${[...items].slice(0, 5).join(', ')}], expected ${expected.size}`);
  }
}

/**
 * `tenants` tenants, each running `rounds` rounds concurrently with all the others on `pool`:
 * an INSERT by tenantQuery, a withTenantTransaction (INSERT, read the setting, SELECT all), a SELECT
 * of all rows by tenantQuery, and a SELECT that explicitly asks for other tenants' rows.
 */
async function interleavedRun(pool: pg.Pool, tenants: number, rounds: number) {
  const checks = new Checks();
  const written = new Map<string, Set<string>>();
  const pids = new Set<number>();
  const started = performance.now();
  await Promise.all(
    Array.from({ length: tenants }, async (_, n) => {
      const tenant = newTenantId();
      const mine = new Set<string>();
      written.set(tenant, mine);
      for (let round = 0; round < rounds; round += 1) {
        // 1. one-round-trip insert: set_config and the statement in one batch, implicit transaction
        const item1 = `t${n}-r${round}-q`;
        const inserted = await tenantQuery<OrderRow & { setting: string }>(
          pool,
          tenant,
          `INSERT INTO orders (tenant_id, item) VALUES ($1, $2) RETURNING tenant_id, item, current_setting('app.tenant_id') AS setting`,
          [tenant, item1],
          NO_PREPARE,
        );
        mine.add(item1);
        checks.expect(inserted.rows.length === 1 && inserted.rows[0]!.setting === tenant && inserted.rows[0]!.item === item1, () => `insert ${item1}: ${JSON.stringify(inserted.rows)}`);

        // 2. a transaction of three statements
        const item2 = `t${n}-r${round}-tx`;
        const inTx = await withTenantTransaction(
          pool,
          tenant,
          async (tx) => {
            await tx.query('INSERT INTO orders (tenant_id, item) VALUES ($1, $2)', [tenant, item2]);
            const who = await tx.query<{ setting: string; pid: number }>(`SELECT current_setting('app.tenant_id') AS setting, pg_backend_pid() AS pid`);
            const all = await tx.query<OrderRow>('SELECT tenant_id, item FROM orders');
            return { who: who.rows[0]!, rows: all.rows };
          },
          NO_PREPARE,
        );
        mine.add(item2);
        pids.add(inTx.who.pid);
        checks.expect(inTx.who.setting === tenant, () => `transaction of ${tenant} saw setting ${inTx.who.setting}`);
        checks.expectRows(tenant, inTx.rows, mine, `transaction t${n} r${round}`);

        // 3. one-round-trip select with no WHERE: RLS decides
        const all = await tenantQuery<OrderRow>(pool, tenant, 'SELECT tenant_id, item FROM orders', [], NO_PREPARE);
        checks.expectRows(tenant, all.rows, mine, `tenantQuery t${n} r${round}`);

        // 4. asking for the others' rows explicitly finds none
        const others = await tenantQuery<{ n: number }>(pool, tenant, 'SELECT count(*)::int AS n FROM orders WHERE tenant_id <> $1', [tenant], NO_PREPARE);
        checks.expect(others.rows[0]!.n === 0, () => `t${n} r${round} counted ${others.rows[0]!.n} rows of other tenants`);
        if (round % 3 === n % 3) await new Promise((r) => setImmediate(r)); // vary the interleaving
      }
    }),
  );
  return { checks, written, pids, ms: performance.now() - started };
}

serial(`${TENANTS} tenants interleaving tenantQuery and withTenantTransaction through PgBouncer transaction pooling each see exactly their own rows`, async (t) => {
  const { db, pool, bouncer } = t.context;
  const { checks, written, pids, ms } = await interleavedRun(pool, TENANTS, ROUNDS);
  t.context.written = written;

  t.deepEqual(checks.failures, [], 'every check held');
  t.is(checks.count, TENANTS * ROUNDS * 7, 'every check ran');
  // The run really shared few server connections among many clients.
  t.is(pool.totalCount, POOL_CLIENTS, `the pool opened its ${POOL_CLIENTS} clients`);
  t.true(pids.size >= 1 && pids.size <= SERVER_POOL_SIZE, `${pids.size} server connection(s) served the transactions`);
  const servers = (await bouncer.servers()).filter((s) => s.database === db.name);
  t.true(servers.length <= SERVER_POOL_SIZE, `PgBouncer holds ${servers.length} server connections for ${POOL_CLIENTS} clients`);

  // What landed where, seen by the admin role (BYPASSRLS), bypassing PgBouncer.
  const { rows } = await db.adminPool.query<OrderRow>('SELECT tenant_id::text, item FROM orders WHERE tenant_id <> $1', [t.context.seeded.id]);
  const stored = new Map<string, Set<string>>();
  for (const row of rows) {
    let items = stored.get(row.tenant_id);
    if (!items) stored.set(row.tenant_id, (items = new Set()));
    items.add(row.item);
  }
  t.is(rows.length, TENANTS * ROUNDS * 2, 'every insert landed once');
  const sorted = (m: Map<string, Set<string>>) => Object.fromEntries([...m].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [k, [...v].sort()]));
  t.deepEqual(sorted(stored), sorted(written), 'every row landed in the tenant that wrote it');

  t.log(
    `${checks.count} checks (${checks.rows} rows inspected) in ${Math.round(ms)} ms: ${TENANTS} tenants × ${ROUNDS} rounds, ` +
      `${TENANTS * ROUNDS * 7} round trips through PgBouncer ${bouncer.version}, ${POOL_CLIENTS} clients on ${servers.length} server connection(s)`,
  );
});

serial('after the run no server connection behind PgBouncer carries a tenant: a plain query sees no setting and zero rows', async (t) => {
  const { db, pool, bouncer } = t.context;
  if (!t.context.written) await interleavedRun(pool, 10, 3); // run alone (--match): make some traffic first
  const probe = `SELECT pg_backend_pid() AS pid, current_setting('app.tenant_id', true) AS setting,
                        (SELECT count(*)::int FROM orders) AS n, pg_sleep(0.02) IS NULL AS slept`;
  const serverPids = new Set((await bouncer.servers()).filter((s) => s.database === db.name).map((s) => s.remotePid));
  t.true(serverPids.size >= 1, 'PgBouncer has server connections to probe');

  // All clients at once, sleeping a little, until every server connection has answered a probe.
  const probed = new Set<number>();
  let probes = 0;
  for (let wave = 0; wave < 20 && [...serverPids].some((p) => !probed.has(p)); wave += 1) {
    const answers = await Promise.all(Array.from({ length: POOL_CLIENTS }, () => pool.query(probe)));
    for (const { rows } of answers) {
      const row = rows[0]!;
      probes += 1;
      probed.add(row.pid);
      t.true(row.setting === null || row.setting === '', `server ${row.pid} still has tenant ${row.setting}`);
      t.is(row.n, 0, `server ${row.pid}: a query with no tenant saw ${row.n} rows`);
    }
  }
  t.deepEqual([...serverPids].filter((p) => !probed.has(p)), [], 'every server connection was probed');
  t.log(`${probes} plain probes over ${probed.size} server connection(s): no tenant, no rows`);
});

serial('named prepared statements (prepare: true) through PgBouncer 1.18 transaction mode fail with errors and never return another tenant’s rows', async (t) => {
  const { db } = t.context;
  const app = db.config.roles.app;
  const bouncer = await startPgBouncer({ upstreamUrl: serverUrl(), users: [{ name: app, password: PASSWORD }], poolSize: SERVER_POOL_SIZE });
  const pool = new pg.Pool({ connectionString: bouncer.url(app, PASSWORD, db.name), max: POOL_CLIENTS });
  pool.on('error', () => undefined);
  const errors = new Map<string, number>();
  const fail = (error: unknown) => {
    const e = error as { code?: string; message?: string };
    const key = `${e.code ?? '?'} ${String(e.message).replace(/"lbmt_[0-9a-f]+"/, '"lbmt_…"')}`;
    errors.set(key, (errors.get(key) ?? 0) + 1);
  };
  let ok = 0;
  let foreignRows = 0;
  let rowsSeen = 0;
  try {
    await Promise.all(
      Array.from({ length: 30 }, async (_, n) => {
        const tenant = newTenantId();
        for (let round = 0; round < 6; round += 1) {
          const attempts: Array<() => Promise<OrderRow[]>> = [
            async () =>
              (await tenantQuery<OrderRow>(pool, tenant, 'INSERT INTO orders (tenant_id, item) VALUES ($1, $2) RETURNING tenant_id, item', [tenant, `p${n}-${round}`]))
                .rows,
            async () => (await tenantQuery<OrderRow>(pool, tenant, 'SELECT tenant_id, item FROM orders')).rows,
            () => withTenantTransaction(pool, tenant, async (tx) => (await tx.query<OrderRow>('SELECT tenant_id, item FROM orders')).rows),
          ];
          for (const attempt of attempts) {
            try {
              const rows = await attempt();
              ok += 1;
              rowsSeen += rows.length;
              foreignRows += rows.filter((r) => r.tenant_id !== tenant).length;
            } catch (error) {
              fail(error);
            }
          }
        }
      }),
    );
  } finally {
    await pool.end();
    await bouncer.stop();
  }
  const failed = [...errors.values()].reduce((a, b) => a + b, 0);
  t.log(`prepare: true through PgBouncer ${bouncer.version}: ${ok} succeeded (${rowsSeen} rows, ${foreignRows} foreign), ${failed} failed:`, Object.fromEntries(errors));
  t.is(foreignRows, 0, 'no statement ever returned another tenant’s row');
  t.true(failed > 0, 'the incompatibility is loud: statements fail');
  // 42P05 duplicate_prepared_statement, 26000 invalid_sql_statement_name (does not exist)
  const codes = new Set([...errors.keys()].map((k) => k.split(' ')[0]));
  t.deepEqual([...codes].filter((c) => c !== '42P05' && c !== '26000'), [], 'the failures are prepared-statement errors');
});

serial('a session-level set_config leaks through PgBouncer transaction pooling to another client, while tenantQuery and withTenantTransaction leave nothing behind', async (t) => {
  const { db, seeded } = t.context;
  const app = db.config.roles.app;
  // One server connection: every client of this PgBouncer shares it.
  const single = await startPgBouncer({ upstreamUrl: serverUrl(), users: [{ name: app, password: PASSWORD }], poolSize: 1 });
  const url = single.url(app, PASSWORD, db.name);
  const libraryPool = new pg.Pool({ connectionString: url, max: 1 });
  libraryPool.on('error', () => undefined);
  const other = new pg.Client({ connectionString: url });
  const probe = `SELECT pg_backend_pid() AS pid, current_setting('app.tenant_id', true) AS setting, (SELECT count(*)::int FROM orders) AS n`;
  type Probe = { pid: number; setting: string | null; n: number };
  const expectClean = (t: ExecutionContext<Context>, seen: Probe, pid: number, after: string) => {
    t.is(seen.pid, pid, `${after}: the other client got the same server connection`);
    t.true(seen.setting === null || seen.setting === '', `${after}: the other client sees tenant ${seen.setting}`);
    t.is(seen.n, 0, `${after}: the other client, with no tenant, sees ${seen.n} rows`);
  };
  try {
    await other.connect();

    // The library's paths: the setting is local to the (implicit) transaction.
    const viaQuery = (await tenantQuery<Probe>(libraryPool, seeded.id, probe, [], NO_PREPARE)).rows[0]!;
    t.is(viaQuery.setting, seeded.id);
    t.is(viaQuery.n, seeded.rows);
    expectClean(t, (await other.query<Probe>(probe)).rows[0]!, viaQuery.pid, 'after tenantQuery');

    const viaTx = await withTenantTransaction(libraryPool, seeded.id, async (tx) => (await tx.query<Probe>(probe)).rows[0]!, NO_PREPARE);
    t.is(viaTx.setting, seeded.id);
    t.is(viaTx.n, seeded.rows);
    expectClean(t, (await other.query<Probe>(probe)).rows[0]!, viaTx.pid, 'after withTenantTransaction');

    // The hazard: a session-level setting (what SET does) stays on the server connection when the
    // statement's transaction ends, and PgBouncer hands that connection to the next client.
    const session = await libraryPool.connect();
    const set = (await session.query<{ pid: number }>(`SELECT set_config('app.tenant_id', $1, false), pg_backend_pid() AS pid`, [seeded.id])).rows[0]!;
    session.release();
    const leaked = (await other.query<Probe>(probe)).rows[0]!;
    t.is(leaked.pid, set.pid, 'the other client got the server connection the setting was made on');
    t.is(leaked.setting, seeded.id, 'the other client inherited the tenant');
    t.is(leaked.n, seeded.rows, 'the other client, which set no tenant, reads that tenant’s rows');
  } finally {
    await other.end().catch(() => undefined);
    await libraryPool.end();
    await single.stop(); // closes the poisoned server connection
  }
});
