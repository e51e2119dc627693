/**
 * Where the floor goes, on ONE connection, one caller, `SELECT 1` (nothing to plan or read):
 *
 *   named      pg's named `SELECT 1` through the pool (the bare reference)
 *   heldNamed  the same on a held client: what the pool's connect/release cost
 *   batch0     the library's batch (src/pipeline.ts) with no prelude, on a held client: the Submittable alone
 *   batch      the batch with the tenant's set_config, on a held client: + one more statement in the round trip
 *   tenant     tenantQuery through the pool: + resolve, lease, release, event
 *
 * Rounds of each in turn; medians of µs per operation. Then `tenant` once more under V8's CPU
 * profiler (node:inspector, the profiler behind `node --cpu-prof`, started around the loop only),
 * summarised by bench/profile-summary.ts.
 *
 *   DATABASE_URL=... npx tsx bench/floor-profile.ts [profile-file]
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import pg from 'pg';
import { DEFAULT_TENANCY } from '../src/config.js';
import { PipelinedBatch } from '../src/pipeline.js';
import { batchOptions, tenantStatement } from '../src/prelude.js';
import { tenantQuery } from '../src/transaction.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA } from '../test/helpers/db.js';
import { median } from './stats.js';

const OPERATIONS = Number(process.env.FLOOR_OPERATIONS ?? 3_000);
const ROUNDS = Number(process.env.FLOOR_ROUNDS ?? 7);
const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
const pool = new pg.Pool({ connectionString: db.appUrl, max: 1 });
pool.on('error', () => undefined); // the drop terminates it
try {
  const tenant = newTenantId();
  const batch = await batchOptions(pool, tenant, 'tenant');
  const prelude = [tenantStatement(DEFAULT_TENANCY, tenant, undefined, false, false)];
  const one = { text: 'SELECT 1', values: [] };
  const held = async (fn: (client: pg.PoolClient) => Promise<unknown>) => {
    const client = await pool.connect();
    try {
      await fn(client);
    } finally {
      client.release();
    }
  };
  const modes: Record<string, (n: number) => Promise<unknown>> = {
    named: async (n) => {
      for (let i = 0; i < n; i += 1) await pool.query({ name: 'floor_one', text: 'SELECT 1' });
    },
    heldNamed: (n) => held(async (c) => {
      for (let i = 0; i < n; i += 1) await c.query({ name: 'floor_one', text: 'SELECT 1' });
    }),
    batch0: (n) => held(async (c) => {
      for (let i = 0; i < n; i += 1) await PipelinedBatch.run(c, [], one, { ...batch, prepare: 'all' });
    }),
    batch: (n) => held(async (c) => {
      for (let i = 0; i < n; i += 1) await PipelinedBatch.run(c, prelude, one, batch);
    }),
    tenant: async (n) => {
      for (let i = 0; i < n; i += 1) await tenantQuery(pool, tenant, 'SELECT 1');
    },
  };
  const perRound = new Map(Object.keys(modes).map((m) => [m, [] as number[]]));
  for (const run of Object.values(modes)) await run(1_000);
  for (let round = 0; round < ROUNDS; round += 1) {
    for (const [mode, run] of Object.entries(modes)) {
      const started = performance.now();
      await run(OPERATIONS);
      perRound.get(mode)!.push(((performance.now() - started) * 1000) / OPERATIONS);
    }
  }
  for (const [mode, us] of perRound) console.log(`${mode.padEnd(9)} ${median(us).toFixed(1).padStart(6)} µs/op (rounds ${Math.min(...us).toFixed(1)} – ${Math.max(...us).toFixed(1)})`);
  const file = process.argv[2];
  if (file) {
    const session = new Session();
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.start');
    await modes.tenant!(OPERATIONS * 5);
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(file, JSON.stringify(profile));
    console.log(`profile of ${OPERATIONS * 5} tenantQuery('SELECT 1') written to ${file}`);
  }
} finally {
  await pool.end();
  await db.drop();
}
