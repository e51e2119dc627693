/**
 * Kysely through the tenant dialect vs Kysely on the bare pool with an explicit WHERE: a one-row
 * lookup by primary key, one caller (target ≤ 1.1×). The baseline is Kysely's own PostgresDialect
 * on the same app-role pool, querying the table without RLS (`orders_plain`) with
 * `WHERE tenant_id = $1 AND id = $2`; the tenant dialect queries the RLS table (`orders`) with
 * `WHERE id = $1` only. Both are checked to return the row before they are timed.
 * `tsx bench/kysely.ts` runs it alone on a small data set; bench/run.ts calls `runKysely()`.
 */
import { pathToFileURL } from 'node:url';
import { Kysely, PostgresDialect } from 'kysely';
import { TenantContext } from '../src/context.js';
import { createTenantDb } from '../src/tenant-db.js';
import { tenantKysely } from '../src/kysely/index.js';
import { measureLatency, type LatencyPlan } from './stats.js';
import { setupBench, type BenchEnv } from './setup.js';

interface Row {
  tenant_id: string;
  id: string;
  item: string;
  amount: number;
  created_at: Date;
}
interface Database {
  orders: Row;
  orders_plain: Row;
}

export const KYSELY = {
  baseline: 'Kysely, PostgresDialect on the bare pool, explicit WHERE tenant_id, no RLS',
  tenant: 'Kysely, tenant dialect (tenantKysely, tenant from TenantContext), RLS, no tenant in the WHERE',
} as const;

export const KYSELY_TARGET = 1.1;

export interface KyselyBench {
  readonly ratio: number;
  readonly ratioRange: readonly [number, number];
  readonly markdown: string;
  readonly target: { target: string; measured: string; ok: boolean };
}

export async function runKysely(env: BenchEnv, plan: LatencyPlan): Promise<KyselyBench> {
  // Kysely's destroy() would end the pool: neither instance is destroyed, the env closes the pool.
  const bare = new Kysely<Database>({ dialect: new PostgresDialect({ pool: env.appPool }) });
  const scoped = tenantKysely<Database>(createTenantDb(env.appPool, { tenancy: env.db.config }));
  let i = 0;
  let j = 0;
  const columns = ['id', 'tenant_id', 'item', 'amount', 'created_at'] as const;
  const variants: Array<[string, () => Promise<number>]> = [
    [KYSELY.baseline, async () => {
      const { tenant, id } = env.lookups[i++ % env.lookups.length]!;
      return (await bare.selectFrom('orders_plain').select(columns).where('tenant_id', '=', tenant).where('id', '=', id).execute()).length;
    }],
    [KYSELY.tenant, async () => {
      const { tenant, id } = env.lookups[j++ % env.lookups.length]!;
      // As in a request: one instance made at start-up, the tenant from TenantContext.
      return TenantContext.run(tenant, async () => (await scoped.selectFrom('orders').select(columns).where('id', '=', id).execute()).length, env.db.config);
    }],
  ];
  for (const [name, op] of variants) {
    if ((await op()) !== 1) throw new Error(`${name} did not return the row: the bench would time nothing`);
  }
  const results = await measureLatency(variants, plan);
  const base = results.get(KYSELY.baseline)!;
  const ours = results.get(KYSELY.tenant)!;
  const f = (n: number, d = 3) => n.toFixed(d);
  const markdown = [
    '## Kysely: tenant dialect vs bare pool with an explicit WHERE, one caller',
    '',
    `One-row lookup by primary key; ${plan.rounds} rounds of ${plan.perRound} per variant after ${plan.warmup} warm-up, rotated; ratio = median of per-round p50 ratios.`,
    '',
    '| variant | p50 ms | p95 ms | ratio | per-round range |',
    '|---|---:|---:|---:|---|',
    `| ${KYSELY.baseline} | ${f(base.p50)} | ${f(base.p95)} | 1.00× | |`,
    `| ${KYSELY.tenant} | ${f(ours.p50)} | ${f(ours.p95)} | ${f(ours.ratio, 2)}× | ${f(ours.ratioRange[0], 2)} – ${f(ours.ratioRange[1], 2)} |`,
    '',
  ].join('\n');
  return {
    ratio: ours.ratio,
    ratioRange: ours.ratioRange,
    markdown,
    target: { target: `Kysely selectFrom through the tenant dialect p50 ≤ ${KYSELY_TARGET} × Kysely on the bare pool with explicit WHERE`, measured: `${f(ours.ratio, 2)}× (rounds ${f(ours.ratioRange[0], 2)} – ${f(ours.ratioRange[1], 2)})`, ok: ours.ratio <= KYSELY_TARGET },
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const env = await setupBench({ rows: 200_000, tenants: 200, bigShare: 0.3 }, (line) => console.log(line));
  try {
    const result = await runKysely(env, { rounds: 7, perRound: 200, warmup: 300 });
    console.log(result.markdown);
    console.log(`${result.target.ok ? 'met' : 'NOT MET'}: ${result.target.target}: ${result.target.measured}`);
  } finally {
    await env.close();
  }
}
