/**
 * Per-tenant limits cost no extra round trip: a one-row lookup through `db.tenantQuery` with the
 * four limits of a plan (statement, lock and idle timeouts, work_mem) set in the tenant prelude vs
 * the same handle without limits, one caller (target ≤ 1.05×). Both checked to return the row.
 * `tsx bench/limits.ts` runs it alone on a small data set; bench/run.ts calls `runLimits()`.
 */
import { pathToFileURL } from 'node:url';
import { TenantContext } from '../src/context.js';
import { createTenantDb } from '../src/tenant-db.js';
import { measureLatency, type LatencyPlan } from './stats.js';
import { setupBench, type BenchEnv } from './setup.js';

export const LIMITS_TARGET = 1.05;
const PLAIN = 'tenantQuery, no limits';
const LIMITED = "tenantQuery, a plan's four limits in the prelude";

export interface LimitsBench {
  readonly markdown: string;
  readonly target: { target: string; measured: string; ok: boolean };
}

export async function runLimits(env: BenchEnv, plan: LatencyPlan): Promise<LimitsBench> {
  const plain = createTenantDb(env.appPool, { tenancy: env.db.config });
  const limited = createTenantDb(env.appPool, {
    tenancy: env.db.config,
    planLimits: { default: { statementTimeoutMs: 30_000, lockTimeoutMs: 5_000, idleInTransactionTimeoutMs: 60_000, workMem: '8MB' } },
  });
  let i = 0;
  let j = 0;
  const lookup = 'SELECT id, item, amount FROM orders WHERE id = $1';
  const variants: Array<[string, () => Promise<number>]> = [
    [PLAIN, async () => {
      const { tenant, id } = env.lookups[i++ % env.lookups.length]!;
      return (await plain.tenantQuery(tenant, lookup, [id])).rows.length;
    }],
    [LIMITED, async () => {
      const { tenant, id } = env.lookups[j++ % env.lookups.length]!;
      return TenantContext.run(tenant, async () => (await limited.tenantQuery(undefined, lookup, [id])).rows.length, env.db.config, 'free');
    }],
  ];
  for (const [name, op] of variants) {
    if ((await op()) !== 1) throw new Error(`${name} did not return the row: the bench would time nothing`);
  }
  const results = await measureLatency(variants, plan);
  const base = results.get(PLAIN)!;
  const ours = results.get(LIMITED)!;
  const f = (n: number, d = 3) => n.toFixed(d);
  const markdown = [
    '## Per-tenant limits in the prelude, one caller',
    '',
    `One-row lookup by primary key through the handle; ${plan.rounds} rounds of ${plan.perRound} per variant after ${plan.warmup} warm-up, rotated; ratio = median of per-round p50 ratios. Both are one round trip (test/limits.test.ts counts them on the wire).`,
    '',
    '| variant | p50 ms | p95 ms | ratio | per-round range |',
    '|---|---:|---:|---:|---|',
    `| ${PLAIN} | ${f(base.p50)} | ${f(base.p95)} | 1.00× | |`,
    `| ${LIMITED} | ${f(ours.p50)} | ${f(ours.p95)} | ${f(ours.ratio, 2)}× | ${f(ours.ratioRange[0], 2)} – ${f(ours.ratioRange[1], 2)} |`,
    '',
  ].join('\n');
  return {
    markdown,
    target: {
      target: `per-tenant limits in the prelude p50 ≤ ${LIMITS_TARGET} × the same tenantQuery without them`,
      measured: `${f(ours.ratio, 2)}× (rounds ${f(ours.ratioRange[0], 2)} – ${f(ours.ratioRange[1], 2)})`,
      ok: ours.ratio <= LIMITS_TARGET,
    },
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const env = await setupBench({ rows: 200_000, tenants: 200, bigShare: 0.3 }, (line) => console.log(line));
  try {
    const result = await runLimits(env, { rounds: 9, perRound: 300, warmup: 300 });
    console.log(result.markdown);
    console.log(`${result.target.ok ? 'met' : 'NOT MET'}: ${result.target.target}: ${result.target.measured}`);
  } finally {
    await env.close();
  }
}
