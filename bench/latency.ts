/**
 * Single-caller latency of a one-row lookup by primary key, and of a 3-statement transaction,
 * through each way of giving PostgreSQL the tenant. Every variant is checked to return the row
 * before it is timed (a variant that silently lost the tenant would return nothing, fast).
 */
import type pg from 'pg';
import { tenantQuery, withTenantTransaction } from '../src/transaction.js';
import type { PrepareMode } from '../src/pipeline.js';
import { measureLatency, type LatencyPlan, type LatencySummary, type Op } from './stats.js';
import type { BenchEnv } from './setup.js';

const COLUMNS = 'id, tenant_id, item, amount, created_at';
export const SQL = {
  plainLookup: `SELECT ${COLUMNS} FROM orders_plain WHERE tenant_id = $1 AND id = $2`,
  rlsLookup: `SELECT ${COLUMNS} FROM orders WHERE id = $1`,
  setTenant: `SELECT set_config('app.tenant_id', $1, true)`,
  plainUpdate: `UPDATE orders_plain SET amount = amount + 1 WHERE tenant_id = $1 AND id = $2`,
  rlsUpdate: `UPDATE orders SET amount = amount + 1 WHERE id = $1`,
  plainPage: `SELECT id, item, amount FROM orders_plain WHERE tenant_id = $1 ORDER BY created_at DESC LIMIT 10`,
  rlsPage: `SELECT id, item, amount FROM orders ORDER BY created_at DESC LIMIT 10`,
} as const;

export const SINGLE = {
  baseline: '(a) baseline: pool.query, explicit WHERE, no RLS (1 round trip)',
  naive: '(b) naive: BEGIN; set_config; query; COMMIT (4 round trips)',
  postgresJs: '(c) postgres.js: sql.begin, set_config pipelined with the query (3 round trips)',
  ours: "(d) tenantQuery, default prepare: 'tenant' (1 round trip)",
  oursAll: "(d) tenantQuery, prepare: 'all' (1 round trip)",
  oursNone: "(d) tenantQuery, prepare: 'none' (1 round trip)",
  namedReference: 'reference, not a target: pool.query with a named statement, explicit WHERE, no RLS',
} as const;

export const THREE = {
  handWritten: 'hand-written BEGIN; 3 statements; COMMIT, explicit WHERE, no RLS (5 round trips)',
  ours: "withTenantTransaction, default prepare: 'tenant' (4 round trips)",
  oursAll: "withTenantTransaction, prepare: 'all' (4 round trips)",
  oursNone: "withTenantTransaction, prepare: 'none' (4 round trips)",
  naive: 'naive BEGIN; set_config; 3 statements; COMMIT (6 round trips)',
  postgresJs: 'postgres.js sql.begin, set_config pipelined with the first statement (5 round trips)',
} as const;

/** Cycles through the lookup targets: each call gets the next (tenant, id). */
function cycle(env: BenchEnv): () => { tenant: string; id: string } {
  let i = 0;
  return () => env.lookups[i++ % env.lookups.length]!;
}

/** Runs `fn` on a checked-out client, as hand-written pg code does; destroys the client on error. */
async function onClient<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    const value = await fn(client);
    client.release();
    return value;
  } catch (error) {
    client.release(error as Error);
    throw error;
  }
}

type RowsOp = () => Promise<number>;

export function singleStatementVariants(env: BenchEnv): Array<[string, RowsOp]> {
  const { appPool: pool, sql } = env;
  const next = () => cycle(env);
  const a = next(), b = next(), c = next(), d0 = next(), d1 = next(), d2 = next(), ref = next();
  return [
    [SINGLE.baseline, async () => {
      const { tenant, id } = a();
      return (await pool.query(SQL.plainLookup, [tenant, id])).rowCount ?? 0;
    }],
    [SINGLE.naive, () => {
      const { tenant, id } = b();
      return onClient(pool, async (client) => {
        await client.query('BEGIN');
        await client.query(SQL.setTenant, [tenant]);
        const result = await client.query(SQL.rlsLookup, [id]);
        await client.query('COMMIT');
        return result.rowCount ?? 0;
      });
    }],
    [SINGLE.postgresJs, async () => {
      const { tenant, id } = c();
      const rows = await sql.begin(async (tx) => {
        // Not awaited: queued so that it is written together with the query. postgres.js queries
        // are lazy, so without .execute() this statement would never be sent at all.
        tx`SELECT set_config('app.tenant_id', ${tenant}, true)`.execute();
        return tx`SELECT id, tenant_id, item, amount, created_at FROM orders WHERE id = ${id}`;
      });
      return rows.length;
    }],
    [SINGLE.ours, async () => {
      const { tenant, id } = d0();
      return (await tenantQuery(pool, tenant, SQL.rlsLookup, [id])).rowCount ?? 0;
    }],
    [SINGLE.oursAll, async () => {
      const { tenant, id } = d1();
      return (await tenantQuery(pool, tenant, SQL.rlsLookup, [id], { prepare: 'all' })).rowCount ?? 0;
    }],
    [SINGLE.oursNone, async () => {
      const { tenant, id } = d2();
      return (await tenantQuery(pool, tenant, SQL.rlsLookup, [id], { prepare: 'none' })).rowCount ?? 0;
    }],
    // (d) with prepare: 'all' skips Parse (and, after 5 executions, planning) as named statements do;
    // this is (a) given the same advantage, to show how much of the gap that is.
    [SINGLE.namedReference, async () => {
      const { tenant, id } = ref();
      return (await pool.query({ name: 'bench_plain_lookup', text: SQL.plainLookup, values: [tenant, id] })).rowCount ?? 0;
    }],
  ];
}

export function threeStatementVariants(env: BenchEnv): Array<[string, RowsOp]> {
  const { appPool: pool, sql } = env;
  const next = () => cycle(env);
  const h = next(), o0 = next(), o1 = next(), o2 = next(), n = next(), c = next();
  const ours = (prepare: PrepareMode, pick: () => { tenant: string; id: string }): RowsOp => async () => {
    const { tenant, id } = pick();
    return withTenantTransaction(pool, tenant, async (tx) => {
      const found = await tx.query(SQL.rlsLookup, [id]);
      await tx.query(SQL.rlsUpdate, [id]);
      await tx.query(SQL.rlsPage);
      return found.rowCount ?? 0;
    }, { prepare });
  };
  return [
    [THREE.handWritten, () => {
      const { tenant, id } = h();
      return onClient(pool, async (client) => {
        await client.query('BEGIN');
        const found = await client.query(SQL.plainLookup, [tenant, id]);
        await client.query(SQL.plainUpdate, [tenant, id]);
        await client.query(SQL.plainPage, [tenant]);
        await client.query('COMMIT');
        return found.rowCount ?? 0;
      });
    }],
    [THREE.ours, ours('tenant', o0)],
    [THREE.oursAll, ours('all', o1)],
    [THREE.oursNone, ours('none', o2)],
    [THREE.naive, () => {
      const { tenant, id } = n();
      return onClient(pool, async (client) => {
        await client.query('BEGIN');
        await client.query(SQL.setTenant, [tenant]);
        const found = await client.query(SQL.rlsLookup, [id]);
        await client.query(SQL.rlsUpdate, [id]);
        await client.query(SQL.rlsPage);
        await client.query('COMMIT');
        return found.rowCount ?? 0;
      });
    }],
    [THREE.postgresJs, async () => {
      const { tenant, id } = c();
      return sql.begin(async (tx) => {
        tx`SELECT set_config('app.tenant_id', ${tenant}, true)`.execute();
        const found = await tx`SELECT id, tenant_id, item, amount, created_at FROM orders WHERE id = ${id}`;
        await tx`UPDATE orders SET amount = amount + 1 WHERE id = ${id}`;
        await tx`SELECT id, item, amount FROM orders ORDER BY created_at DESC LIMIT 10`;
        return found.length;
      });
    }],
  ];
}

/** Every variant must find exactly its one row: proves the tenant reached PostgreSQL. */
export async function verify(variants: ReadonlyArray<[string, RowsOp]>): Promise<void> {
  for (const [name, op] of variants) {
    for (let i = 0; i < 20; i += 1) {
      const rows = await op();
      if (rows !== 1) throw new Error(`bench variant "${name}" returned ${rows} rows instead of 1`);
    }
  }
}

export interface LatencyResults {
  readonly single: Map<string, LatencySummary>;
  readonly three: Map<string, LatencySummary>;
  readonly plan: LatencyPlan;
}

export async function runLatency(env: BenchEnv, plan: LatencyPlan): Promise<LatencyResults> {
  const single = singleStatementVariants(env);
  const three = threeStatementVariants(env);
  await verify(single);
  await verify(three);
  return {
    single: await measureLatency(single as Array<[string, Op]>, plan),
    three: await measureLatency(three as Array<[string, Op]>, plan),
    plan,
  };
}
