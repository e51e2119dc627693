/**
 * `npm run bench`: every measurement in one run, against DATABASE_URL (a superuser URL) when set,
 * else an embedded PostgreSQL started for the run; writes bench/RESULTS.md.
 * `BENCH_QUICK=1 npm run bench` shrinks the data set and the rounds (for iterating, ~1 minute).
 * `BENCH_ONLY=peers` runs only the peers section (bench/peers.ts: the issue-10 table, on 200k rows and
 * 200 tenants) and rewrites that section of RESULTS.md, a few minutes.
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
import { benchGuardIsolated, type GuardBench } from './guard.js';
import { runPeers, type PeersResults } from './peers.js';
import { peersTargets, renderPeers, writePeersSection } from './peers-report.js';
import { FLOOR_PROFILE_NOTES } from './floor-notes.js';
import { benchFleet } from './fleet.js';
import { renderCitus, runCitusBench } from './citus.js';
import { runKysely } from './kysely.js';
import { runLimits } from './limits.js';
import { runWriteGate } from './write-gate.js';
import { portabilityTargets, renderPortability, runPortability } from './portability.js';

const quick = process.env.BENCH_QUICK === '1';

const startedAt = new Date();
const loadStart = os.loadavg()[0]!;
const t0 = performance.now();
const log = (line: string) => console.log(`[bench ${((performance.now() - t0) / 1000).toFixed(0).padStart(3)} s] ${line}`);

const only = process.env.BENCH_ONLY;
if (only !== undefined && only !== 'peers') throw new Error('BENCH_ONLY may only be "peers"');
const results = new URL('./RESULTS.md', import.meta.url);
const peersPlans: PeersResults['plans'] = {
  latency: { rounds: 9, perRound: 200, warmup: 200 },
  throughput: { rounds: 10, callers: 32, durationMs: 1_000, warmupMs: 500 },
  floor: { rounds: 9, perRound: 400, warmup: 300 },
};
async function peers(env: Awaited<ReturnType<typeof setupBench>>): Promise<string> {
  log('peers: count(*) against the bare drivers, the floor, pipelined');
  const measured = await runPeers(env, peersPlans);
  for (const t of peersTargets(measured)) log(`${t.ok ? 'met    ' : 'NOT MET'}${t.info ? ' (info)' : ''} ${t.target}: ${t.measured}`);
  return renderPeers(env, measured, FLOOR_PROFILE_NOTES);
}

// The guard needs no database and costs CPU only: timed first, in its own process (bench/guard.ts).
let guard: GuardBench | undefined;
if (only !== 'peers') {
  log('sql guard (in its own process, before the database phases)');
  guard = await benchGuardIsolated({ quick });
}

const env = await setupBench(
  quick || only === 'peers' ? { rows: 200_000, tenants: 200, bigShare: 0.3 } : { rows: 1_000_000, tenants: 1_000, bigShare: 0.3 },
  log,
);
if (only === 'peers') {
  try {
    writePeersSection(results, await peers(env));
    log('wrote the peers section of bench/RESULTS.md');
  } finally {
    await env.close();
  }
  process.exit(0);
}
try {
  log('skew: RLS bare / initplan vs explicit WHERE');
  const skew = await runSkew(env, quick ? { rounds: 3, budgetMs: 60 } : { rounds: 7, budgetMs: 300 });
  log('prepare modes and cached plans across tenants');
  const planCache = await runPlanCache(env, quick ? 3 : 7);
  log('latency');
  const latency = await runLatency(env, quick ? { rounds: 5, perRound: 100, warmup: 100 } : { rounds: 15, perRound: 200, warmup: 300 });
  log('kysely: tenant dialect vs bare pool');
  const kysely = await runKysely(env, quick ? { rounds: 5, perRound: 100, warmup: 100 } : { rounds: 15, perRound: 200, warmup: 300 });
  log('limits: per-tenant limits in the prelude');
  const limits = await runLimits(env, quick ? { rounds: 5, perRound: 100, warmup: 100 } : { rounds: 15, perRound: 200, warmup: 300 });
  log('write gate: the move key in the prelude');
  const writeGate = await runWriteGate(
    env,
    quick ? { rounds: 5, perRound: 100, warmup: 100 } : { rounds: 15, perRound: 200, warmup: 300 },
    quick ? { rounds: 3, callers: 16, durationMs: 1_000, warmupMs: 300 } : { rounds: 9, callers: 16, durationMs: 1_500, warmupMs: 1_000 },
  );
  log('throughput');
  const throughput = await runThroughput(
    env,
    quick ? { rounds: 3, callers: 32, durationMs: 1_000, warmupMs: 500 } : { rounds: 12, callers: 32, durationMs: 1_500, warmupMs: 1_500 },
  );
  log('http (autocannon)');
  const http = await runHttp(env, quick ? { rounds: 2, durationSeconds: 2, connections: 32 } : { rounds: 5, durationSeconds: 4, connections: 32 });
  const peersSection = await peers(env);
  log('fleet migrations');
  const fleet = await benchFleet({ databases: quick ? 40 : 200, log });
  // Citus (bench/citus.ts): its own coordinator + 2 workers, when Citus is installed.
  log('citus');
  const citus = await runCitusBench({ quick }, log);
  log('tenant export and import (portability)');
  const portability = await runPortability(quick ? [10_000, 100_000] : [100_000, 1_000_000], log, quick ? 1 : 3);
  const markdown = renderResults(
    env,
    { quick, startedAt, loadStart, seconds: (performance.now() - t0) / 1000 },
    latency,
    throughput,
    skew,
    planCache,
    { http, guard, kysely, sections: [limits.markdown, writeGate.markdown, fleet.markdown, renderPortability(portability)] },
  );
  writeFileSync(results, `${markdown.trimEnd()}\n\n${peersSection}${renderCitus(citus)}`);
  if (typeof citus === 'string') log(`citus: not measured (${citus})`);
  else log(`citus: tenantQuery ${citus.vsRouter.toFixed(2)}x the router query (target <= 1.2x); naive ${citus.vsNaive.toFixed(2)}x tenantQuery (target >= 1.6x)`);
  for (const t of [...targets(latency, throughput, skew, http, guard), ...portabilityTargets(portability).map((x) => ({ ...x, info: false }))]) {
    log(`${t.ok ? 'met    ' : 'NOT MET'}${t.info ? ' (info)' : ''} ${t.target}: ${t.measured}`);
  }
  log(`${kysely.target.ok ? 'met    ' : 'NOT MET'} ${kysely.target.target}: ${kysely.target.measured}`);
  log(`${limits.target.ok ? 'met    ' : 'NOT MET'} ${limits.target.target}: ${limits.target.measured}`);
  for (const t of writeGate.targets) log(`${t.ok ? 'met    ' : 'NOT MET'} ${t.target}: ${t.measured}`);
  log('wrote bench/RESULTS.md');
} finally {
  await env.close();
}
