/**
 * Pipelined tenant statements (createTenantDb(pool, { pipeline })): several tenantQuery batches in
 * flight on one connection, each its own implicit transaction closed by its own Sync. As the app
 * role under RLS; kills and checks as the superuser.
 */
import anyTest, { type TestFn } from 'ava';
import { createTenantDb, PipelineBrokenError, type TenantDb } from '../src/index.js';
import { createTestDatabase, newTenantId, type TestDatabase } from './helpers/db.js';
import { blockedPipeline, pipelineWorkload, storedRows, UNIQUE_ORDERS_SCHEMA } from './helpers/pipeline-workload.js';
import type { OrderRow } from './helpers/interleave.js';

const test = anyTest as TestFn<{ db: TestDatabase }>;

test.before(async (t) => {
  t.context.db = await createTestDatabase({ schema: UNIQUE_ORDERS_SCHEMA, tenancy: { tables: ['orders'] }, appPoolMax: 6 });
});
test.after.always(async (t) => {
  await t.context.db?.drop();
});

const appBackends = async (db: TestDatabase) =>
  (await db.superQuery<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE datname = $1 AND usename = $2`, [db.name, db.config.roles.app])).rows.map((r) => r.pid);

test.serial('eight batches of different tenants are in flight at once on one connection, each answered with its own tenant', async (t) => {
  const { db } = t.context;
  const handle = createTenantDb(db.appPool, { pipeline: { connections: 1, depth: 16 } });
  const tenants = Array.from({ length: 8 }, newTenantId);
  for (const tenant of tenants) await handle.tenantQuery(tenant, 'INSERT INTO orders (tenant_id, item) VALUES ($1, $2)', [tenant, `own-${tenant}`]);
  const { results, inFlightSeen, pids } = await blockedPipeline(db, handle, tenants.map((tenant) => [tenant, 'SELECT tenant_id, item, pg_backend_pid() AS pid FROM orders', []]));
  t.is(inFlightSeen, 8, 'all eight were written before the first was answered');
  t.is(new Set(pids).size, 1, 'one connection');
  results.forEach((result, i) => {
    t.is(result.status, 'fulfilled');
    const rows = (result as PromiseFulfilledResult<{ rows: OrderRow[] }>).value.rows;
    t.deepEqual(rows.map((r) => [r.tenant_id, r.item]), [[tenants[i], `own-${tenants[i]}`]]);
  });
});

test.serial('an error in one batch fails that call alone: the batches behind it keep their tenant and rows', async (t) => {
  const { db } = t.context;
  const handle = createTenantDb(db.appPool, { pipeline: { connections: 1, depth: 16 } });
  const [a, b] = [newTenantId(), newTenantId()];
  await handle.tenantQuery(a, 'INSERT INTO orders (tenant_id, item) VALUES ($1, $2)', [a, 'taken']);
  const insert = 'INSERT INTO orders (tenant_id, item) VALUES ($1, $2) RETURNING tenant_id, item';
  const select = 'SELECT tenant_id, item FROM orders ORDER BY item';
  const { results } = await blockedPipeline(db, handle, [
    [a, 'SELECT 1 / 0', []],
    [b, insert, [b, 'b-after-division']],
    [a, insert, [a, 'taken']], // unique violation
    [b, select, []],
    [a, `SELECT set_config('app.tenant_id', $1, false)`, [b]], // a session-level setting, left behind on purpose
    [a, select, []],
  ]);
  const reason = (i: number) => (results[i] as PromiseRejectedResult).reason as { code?: string };
  const rows = (i: number) => (results[i] as PromiseFulfilledResult<{ rows: OrderRow[] }>).value.rows.map((r) => [r.tenant_id, r.item]);
  t.is(reason(0).code, '22012');
  t.deepEqual(rows(1), [[b, 'b-after-division']]);
  t.is(reason(2).code, '23505');
  t.deepEqual(rows(3), [[b, 'b-after-division']]);
  t.deepEqual(rows(5), [[a, 'taken']], 'a session-level setting does not outlast its batch\'s own set_config');
  t.deepEqual(await storedRows(db, [a, b]), [[a, 'taken'], [b, 'b-after-division']].sort());
});

test.serial('a statement that fails to parse fails the same way in every batch in flight (none relies on a Parse not yet answered)', async (t) => {
  const { db } = t.context;
  const handle = createTenantDb(db.appPool, { pipeline: { connections: 1, depth: 16 } });
  const [a, b] = [newTenantId(), newTenantId()];
  const { results } = await blockedPipeline(db, handle, [
    [a, 'SELECT * FROM no_such_table', []],
    [b, 'SELECT * FROM no_such_table', []],
    [a, 'SELECT count(*)::int AS n FROM orders', []],
  ]);
  t.deepEqual(results.slice(0, 2).map((r) => ((r as PromiseRejectedResult).reason as { code?: string }).code), ['42P01', '42P01']);
  t.is(results[2]!.status, 'fulfilled');
});

test.serial('a backend killed mid-pipeline fails every batch in flight, and its connection is never used again', async (t) => {
  const { db } = t.context;
  const handle = createTenantDb(db.appPool, { pipeline: { connections: 1, depth: 16 } });
  const tenants = Array.from({ length: 6 }, newTenantId);
  let killed: number | undefined;
  const { results } = await blockedPipeline(
    db,
    handle,
    tenants.map((tenant) => [tenant, 'INSERT INTO orders (tenant_id, item) VALUES ($1, $2)', [tenant, 'in-flight']]),
    async () => {
      const { rows } = await db.superQuery(
        `SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND usename = $2 AND wait_event_type = 'Lock'`,
        [db.name, db.config.roles.app],
      );
      killed = rows[0].pid;
    },
  );
  for (const result of results) {
    t.is(result.status, 'rejected');
    t.true((result as PromiseRejectedResult).reason instanceof PipelineBrokenError);
    t.is(((result as PromiseRejectedResult).reason as PipelineBrokenError).reason, 'connection-lost');
  }
  t.deepEqual(await storedRows(db, tenants), [], 'none of them committed (the first was waiting on a lock)');
  t.is(handle.pipeline?.stats().connections, 0, 'the broken connection left the pipeline');
  const after = await handle.tenantQuery(tenants[0], 'SELECT pg_backend_pid() AS pid');
  t.not(after.rows[0].pid, killed, 'a new connection');
  t.false((await appBackends(db)).includes(killed!), 'the killed backend is gone');
});

test.serial('BEGIN through a pipelined tenantQuery fails, with every batch behind it, and nothing of theirs commits', async (t) => {
  const { db } = t.context;
  const handle = createTenantDb(db.appPool, { pipeline: { connections: 1, depth: 16 } });
  const [a, b] = [newTenantId(), newTenantId()];
  const { results } = await blockedPipeline(db, handle, [
    [a, 'BEGIN', []],
    [b, 'INSERT INTO orders (tenant_id, item) VALUES ($1, $2)', [b, 'inside-someone-elses-transaction']],
  ]);
  for (const result of results) t.is(((result as PromiseRejectedResult).reason as PipelineBrokenError).reason, 'transaction-left-open', String((result as any).reason?.cause?.stack));
  t.deepEqual(await storedRows(db, [a, b]), []);
  t.is((await handle.tenantQuery(b, 'SELECT count(*)::int AS n FROM orders')).rows[0].n, 0);
});

test.serial('COPY FROM STDIN cannot be pipelined: it fails with the batches behind it, and the connection is destroyed', async (t) => {
  const { db } = t.context;
  // Not under RLS (RLS refuses COPY FROM before copy-in mode): the server would wait for COPY data.
  await db.superQuery(`CREATE TABLE IF NOT EXISTS copy_target (x int); GRANT INSERT ON copy_target TO ${db.config.roles.app}`);
  const handle = createTenantDb(db.appPool, { pipeline: { connections: 1, depth: 16 } });
  const [a, b] = [newTenantId(), newTenantId()];
  const { results } = await blockedPipeline(db, handle, [
    [a, 'COPY copy_target FROM STDIN', []],
    [b, 'INSERT INTO orders (tenant_id, item) VALUES ($1, $2)', [b, 'behind-the-copy']],
  ]);
  for (const result of results) t.true((result as PromiseRejectedResult).reason instanceof PipelineBrokenError);
  t.regex(String(((results[0] as PromiseRejectedResult).reason as Error).cause), /COPY FROM STDIN/);
  t.deepEqual(await storedRows(db, [b]), []);
  t.is(handle.pipeline?.stats().connections, 0);
  t.is((await handle.tenantQuery(b, 'SELECT count(*)::int AS n FROM orders')).rows[0].n, 0, 'the next call gets a working connection');
});

test.serial('inside withTenantTransaction a pipelined tenantQuery joins the transaction instead', async (t) => {
  const { db } = t.context;
  const handle = createTenantDb(db.appPool, { pipeline: { connections: 1, depth: 16 } });
  const a = newTenantId();
  const seen = await handle.withTenantTransaction(a, async (tx) => {
    await tx.query('INSERT INTO orders (tenant_id, item) VALUES ($1, $2)', [a, 'uncommitted']);
    const inside = await handle.tenantQuery(a, 'SELECT item, pg_backend_pid() AS pid, txid_current() AS x FROM orders');
    const own = await tx.query('SELECT pg_backend_pid() AS pid, txid_current() AS x');
    return { inside: inside.rows, own: own.rows[0] };
  });
  t.deepEqual(seen.inside.map((r) => r.item), ['uncommitted']);
  t.is(seen.inside[0].pid, seen.own.pid);
  t.is(seen.inside[0].x, seen.own.x, 'the same transaction');
  t.is(handle.pipeline?.stats().inFlight, 0);
});

test.serial('pipelined batches interleaving 50 tenants, with statement errors and backends killed as they go: every row is its tenant\'s, every acknowledged write is stored', async (t) => {
  const { db } = t.context;
  const handle: TenantDb = createTenantDb(db.appPool, { pipeline: { connections: 3, depth: 8 } });
  const out = await pipelineWorkload(db, handle, { tenants: 50, rounds: 12, killEvery: 150 });
  t.log(`${out.ok} succeeded, ${out.failed} failed, ${out.kills} backends killed, ${out.maxInFlight} in flight at most:`, Object.fromEntries(out.errors));
  t.deepEqual(out.failures, [], 'every answer was checked');
  t.true(out.kills >= 5, `${out.kills} backends were killed`);
  t.true((out.errors.get('LBMT_PIPELINE_BROKEN') ?? 0) > 0, 'kills hit batches in flight');
  t.true(out.maxInFlight > 3, 'several batches were in flight per connection');
  t.true((out.errors.get('22012') ?? 0) > 0 && (out.errors.get('23505') ?? 0) > 0, 'injected errors happened');
  t.deepEqual([...out.errors.keys()].filter((k) => !['22012', '23505', 'LBMT_PIPELINE_BROKEN'].includes(k)), [], 'no other failure (no RLS refusal, no mis-routed statement)');
  const stored = await storedRows(db, [...out.attempted.keys()]);
  const has = new Set(stored.map(([tenant, item]) => `${tenant} ${item}`));
  const lost = [...out.committed].flatMap(([tenant, items]) => [...items].filter((item) => !has.has(`${tenant} ${item}`)));
  const stray = stored.filter(([tenant, item]) => !out.attempted.get(tenant)?.has(item));
  t.deepEqual(lost, [], 'every write whose call returned is stored');
  t.deepEqual(stray, [], 'every stored row was written by its own tenant');
});
