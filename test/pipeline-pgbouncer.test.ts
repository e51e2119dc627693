/**
 * Pipelined tenant statements through PgBouncer in transaction mode: each batch is a whole
 * transaction, so PgBouncer may hand the next one to any server connection. With named statements
 * this needs PgBouncer >= 1.21 with max_prepared_statements (as without pipelining); before, with
 * `prepare: 'none'`.
 */
import test from 'ava';
import pg from 'pg';
import { createTenantDb, type PrepareMode } from '../src/index.js';
import { createTestDatabase, serverUrl, type TestDatabase } from './helpers/db.js';
import { MAX_PREPARED_STATEMENTS, pgBouncersUnderTest, startPgBouncer, type PgBouncerBinary } from './helpers/pgbouncer.js';
import { pipelineWorkload, storedRows, UNIQUE_ORDERS_SCHEMA } from './helpers/pipeline-workload.js';

const PASSWORD = 'lbmt-test';
/** Errors of a mis-routed named statement: 42P05 duplicate_prepared_statement, 26000 invalid_sql_statement_name. */
const MISROUTED = ['42P05', '26000'];

let db: TestDatabase;
test.before(async () => {
  db = await createTestDatabase({ schema: UNIQUE_ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
});
test.after.always(async () => {
  await db?.drop();
});

async function throughBouncer<T>(binary: PgBouncerBinary, maxPreparedStatements: number | undefined, fn: (pool: pg.Pool) => Promise<T>): Promise<T> {
  const app = db.config.roles.app;
  const bouncer = await startPgBouncer({ binary: binary.path, upstreamUrl: serverUrl(), users: [{ name: app, password: PASSWORD }], poolSize: 2, maxPreparedStatements });
  const pool = new pg.Pool({ connectionString: bouncer.url(app, PASSWORD, db.name), max: 4 });
  pool.on('error', () => undefined);
  try {
    return await fn(pool);
  } finally {
    await pool.end();
    await bouncer.stop();
  }
}

for (const binary of pgBouncersUnderTest(test, 'test/pipeline-pgbouncer.test.ts')) {
  const prepare: PrepareMode = binary.routesPreparedStatements ? 'tenant' : 'none';
  const setting = binary.routesPreparedStatements ? MAX_PREPARED_STATEMENTS : undefined;
  for (const killEvery of [0, 100]) {
    test.serial(`PgBouncer ${binary.version}, transaction mode, prepare '${prepare}': pipelined batches of 50 tenants with statement errors${killEvery ? ' and server connections killed' : ''} keep every row with its tenant and every acknowledged write`, async (t) => {
      const out = await throughBouncer(binary, setting, (pool) =>
        pipelineWorkload(db, createTenantDb(pool, { prepare, pipeline: { connections: 3, depth: 8 } }), { tenants: 50, rounds: 8, killEvery }),
      );
      t.log(`${out.ok} succeeded, ${out.failed} failed, ${out.kills} killed, ${out.maxInFlight} in flight at most:`, Object.fromEntries(out.errors));
      t.deepEqual(out.failures, []);
      t.true(out.maxInFlight > 3, 'several batches were in flight per connection');
      if (killEvery) t.true(out.kills >= 3 && (out.errors.get('LBMT_PIPELINE_BROKEN') ?? 0) > 0, `${out.kills} server connections were killed, failing batches in flight`);
      else t.is(out.errors.get('LBMT_PIPELINE_BROKEN'), undefined, 'without kills no connection broke');
      const stored = await storedRows(db, [...out.attempted.keys()]);
      const has = new Set(stored.map(([tenant, item]) => `${tenant} ${item}`));
      const lost = [...out.committed].flatMap(([tenant, items]) => [...items].filter((item) => !has.has(`${tenant} ${item}`)));
      t.deepEqual(lost, [], 'every write whose call returned is stored');
      t.deepEqual(stored.filter(([tenant, item]) => !out.attempted.get(tenant)?.has(item)), [], 'every stored row was written by its own tenant');
    });
  }
  if (binary.routesPreparedStatements) continue;
  test.serial(`PgBouncer ${binary.version}, which cannot route named statements: the default prepare mode, pipelined, fails loudly (26000/42P05) and never returns another tenant's rows`, async (t) => {
    const out = await throughBouncer(binary, undefined, (pool) =>
      pipelineWorkload(db, createTenantDb(pool, { pipeline: { connections: 3, depth: 8 } }), { tenants: 50, rounds: 8, tolerate: [...MISROUTED] }),
    );
    t.log(`${out.ok} succeeded, ${out.failed} failed:`, Object.fromEntries(out.errors));
    t.deepEqual(out.failures, [], 'no foreign row, no committed row missing, no other error');
    t.true([...MISROUTED].some((code) => (out.errors.get(code) ?? 0) > 0), 'the incompatibility is loud');
    const stored = await storedRows(db, [...out.attempted.keys()]);
    t.deepEqual(stored.filter(([tenant, item]) => !out.attempted.get(tenant)?.has(item)), [], 'every stored row was written by its own tenant');
  });
}
