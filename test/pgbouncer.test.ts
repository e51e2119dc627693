/**
 * Tenant isolation through PgBouncer in TRANSACTION pooling mode (PITFALLS 6-8): many clients share
 * a few server connections, and PgBouncer never resets a server connection between clients.
 *
 * Run against every PgBouncer build on the machine (test/helpers/pgbouncer.ts findPgBouncers):
 * Debian's 1.18, which cannot route protocol-level prepared statements, with `prepare: 'none'`; and
 * 1.21+ (the 1.25 build of ../shared/pgbouncer/install.sh) in the library's default mode with
 * `max_prepared_statements`, as deployments run it today. Named statements themselves are tested in
 * pgbouncer-prepared.test.ts. Outside CI a missing build is skipped visibly; in CI it fails the run.
 */
import test, { type ExecutionContext } from 'ava';
import pg from 'pg';
import { tenantQuery, withTenantTransaction } from '../src/index.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA, serverUrl, type TestDatabase } from './helpers/db.js';
import { interleavedRun, type OrderRow, type TenantCallOptions } from './helpers/interleave.js';
import { MAX_PREPARED_STATEMENTS, pgBouncersUnderTest, startPgBouncer, type PgBouncer, type PgBouncerBinary, type PgBouncerOptions } from './helpers/pgbouncer.js';

const PASSWORD = 'lbmt-test'; // test/helpers/db.ts gives every role of a test database this password
const POOL_CLIENTS = 16;
const SERVER_POOL_SIZE = 2;
const TENANTS = 50;
const ROUNDS = 20;

interface Suite {
  db: TestDatabase;
  bouncer: PgBouncer;
  bouncerOptions: PgBouncerOptions;
  /** 16 clients of the app role through `bouncer` (2 server connections per database and user). */
  pool: pg.Pool;
  options: TenantCallOptions;
  /** A seeded tenant and how many rows it has (for the leak demonstrations). */
  seeded: { id: string; rows: number };
  /** Set by the concurrent run: tenant id → the items it wrote. */
  written?: Map<string, Set<string>>;
}

for (const binary of pgBouncersUnderTest(test, 'test/pgbouncer.test.ts')) registerSuite(binary);

function registerSuite(binary: PgBouncerBinary): void {
  const mode = binary.routesPreparedStatements ? `default prepare mode, max_prepared_statements = ${MAX_PREPARED_STATEMENTS}` : "prepare: 'none'";
  const name = `PgBouncer ${binary.version} (${mode})`;
  let suite!: Suite;

  test.before(async () => {
    const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
    const app = db.config.roles.app;
    const bouncerOptions: PgBouncerOptions = {
      binary: binary.path,
      upstreamUrl: serverUrl(),
      users: [{ name: app, password: PASSWORD }],
      poolSize: SERVER_POOL_SIZE,
      maxPreparedStatements: binary.routesPreparedStatements ? MAX_PREPARED_STATEMENTS : undefined,
    };
    const bouncer = await startPgBouncer(bouncerOptions);
    const pool = db.pool(bouncer.url(app, PASSWORD, db.name), { max: POOL_CLIENTS });
    const seeded = { id: newTenantId(), rows: 3 };
    await db.superQuery(`INSERT INTO orders (tenant_id, item) SELECT $1, 'seed-' || g FROM generate_series(1, $2) g`, [seeded.id, seeded.rows]);
    const options: TenantCallOptions = binary.routesPreparedStatements ? {} : { prepare: 'none' };
    suite = { db, bouncer, bouncerOptions, pool, options, seeded };
  });

  test.after.always(async () => {
    await suite?.db.drop(); // ends the pools first
    await suite?.bouncer.stop();
  });

  test.serial(`${name}: ${TENANTS} tenants interleaving tenantQuery and withTenantTransaction each see exactly their own rows`, async (t) => {
  const { db, pool, bouncer } = suite;
  const { checks, written, pids, ms } = await interleavedRun(pool, TENANTS, ROUNDS, suite.options);
  suite.written = written;

  t.deepEqual(checks.failures, [], 'every check held');
  t.is(checks.count, TENANTS * ROUNDS * 7, 'every check ran');
  // The run really shared few server connections among many clients.
  t.is(pool.totalCount, POOL_CLIENTS, `the pool opened its ${POOL_CLIENTS} clients`);
  t.true(pids.size >= 1 && pids.size <= SERVER_POOL_SIZE, `${pids.size} server connection(s) served the transactions`);
  const servers = (await bouncer.servers()).filter((s) => s.database === db.name);
  t.true(servers.length <= SERVER_POOL_SIZE, `PgBouncer holds ${servers.length} server connections for ${POOL_CLIENTS} clients`);

  // What landed where, seen by the admin role (BYPASSRLS), bypassing PgBouncer.
  const { rows } = await db.adminPool.query<OrderRow>('SELECT tenant_id::text, item FROM orders WHERE tenant_id <> $1', [suite.seeded.id]);
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

  test.serial(`${name}: after the run no server connection carries a tenant: a plain query sees no setting and zero rows`, async (t) => {
  const { db, pool, bouncer } = suite;
  if (!suite.written) await interleavedRun(pool, 10, 3, suite.options); // run alone (--match): make some traffic first
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

  test.serial(`${name}: a session-level set_config leaks to another client, while tenantQuery and withTenantTransaction leave nothing behind`, async (t) => {
  const { db, seeded } = suite;
  const app = db.config.roles.app;
  // One server connection: every client of this PgBouncer shares it.
  const single = await startPgBouncer({ ...suite.bouncerOptions, poolSize: 1 });
  const url = single.url(app, PASSWORD, db.name);
  const libraryPool = new pg.Pool({ connectionString: url, max: 1 });
  libraryPool.on('error', () => undefined);
  const other = new pg.Client({ connectionString: url });
  const probe = `SELECT pg_backend_pid() AS pid, current_setting('app.tenant_id', true) AS setting, (SELECT count(*)::int FROM orders) AS n`;
  type Probe = { pid: number; setting: string | null; n: number };
  const expectClean = (t: ExecutionContext, seen: Probe, pid: number, after: string) => {
    t.is(seen.pid, pid, `${after}: the other client got the same server connection`);
    t.true(seen.setting === null || seen.setting === '', `${after}: the other client sees tenant ${seen.setting}`);
    t.is(seen.n, 0, `${after}: the other client, with no tenant, sees ${seen.n} rows`);
  };
  try {
    await other.connect();

    // The library's paths: the setting is local to the (implicit) transaction.
    const viaQuery = (await tenantQuery<Probe>(libraryPool, seeded.id, probe, [], suite.options)).rows[0]!;
    t.is(viaQuery.setting, seeded.id);
    t.is(viaQuery.n, seeded.rows);
    expectClean(t, (await other.query<Probe>(probe)).rows[0]!, viaQuery.pid, 'after tenantQuery');

    const viaTx = await withTenantTransaction(libraryPool, seeded.id, async (tx) => (await tx.query<Probe>(probe)).rows[0]!, suite.options);
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
}
