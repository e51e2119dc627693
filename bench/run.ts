/**
 * `npm run bench`: every measurement in one run, against DATABASE_URL (a superuser URL) when set,
 * else an embedded PostgreSQL started for the run; writes bench/RESULTS.md.
 * `BENCH_QUICK=1 npm run bench` shrinks the data set and the rounds (for iterating, ~1 minute).
 *
 * Order matters: the skew and plan-cache measurements run first, before the 3-statement
 * transactions UPDATE rows (which would clear visibility-map bits and leave dead tuples).
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { runLatency } from './latency.js';
import { runPlanCache } from './plancache.js';
import { renderResults, targets } from './report.js';
import { setupBench } from './setup.js';
import { runSkew } from './skew.js';
import { runThroughput } from './throughput.js';
import { runHttp } from './http.js';
import { benchGuard } from './guard.js';
import { portabilityTargets, renderPortability, runPortability } from './portability.js';

const quick = process.env.BENCH_QUICK === '1';

const startedAt = new Date();
const loadStart = os.loadavg()[0]!;
const t0 = performance.now();
const log = (line: string) => console.log(`[bench ${((performance.now() - t0) / 1000).toFixed(0).padStart(3)} s] ${line}`);

const env = await setupBench(
  quick ? { rows: 200_000, tenants: 200, bigShare: 0.3 } : { rows: 1_000_000, tenants: 1_000, bigShare: 0.3 },
  log,
);
try {
  log('skew: RLS bare / initplan vs explicit WHERE');
  const skew = await runSkew(env, quick ? { rounds: 3, budgetMs: 60 } : { rounds: 7, budgetMs: 300 });
  log('prepare modes and cached plans across tenants');
  const planCache = await runPlanCache(env, quick ? 3 : 7);
  log('latency');
  const latency = await runLatency(env, quick ? { rounds: 5, perRound: 100, warmup: 100 } : { rounds: 15, perRound: 200, warmup: 300 });
  log('throughput');
  const throughput = await runThroughput(
    env,
    quick ? { rounds: 3, callers: 32, durationMs: 1_000, warmupMs: 500 } : { rounds: 12, callers: 32, durationMs: 1_500, warmupMs: 1_500 },
  );
  log('http (autocannon)');
  const http = await runHttp(env, quick ? { rounds: 2, durationSeconds: 2, connections: 32 } : { rounds: 5, durationSeconds: 4, connections: 32 });
  log('sql guard');
  const guard = await benchGuard({ quick });
  log('tenant export and import (portability)');
  const portability = await runPortability(quick ? [10_000, 100_000] : [100_000, 1_000_000], log, quick ? 1 : 3);
  const markdown = renderResults(
    env,
    { quick, startedAt, loadStart, seconds: (performance.now() - t0) / 1000 },
    latency,
    throughput,
    skew,
    planCache,
    { http, guard },
  ) + '\n' + renderPortability(portability);
  writeFileSync(new URL('./RESULTS.md', import.meta.url), markdown);
  for (const t of [...targets(latency, throughput, skew, http, guard), ...portabilityTargets(portability).map((x) => ({ ...x, info: false }))]) {
    log(`${t.ok ? 'met    ' : 'NOT MET'}${t.info ? ' (info)' : ''} ${t.target}: ${t.measured}`);
  }
  log('wrote bench/RESULTS.md');
} finally {
  await env.close();
}
