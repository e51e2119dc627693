/**
 * Throughput of the one-row lookup with 32 concurrent callers on a pool of 8 connections (pg.Pool
 * max 8; postgres.js max 8), variants interleaved in rounds against the baseline of the same round.
 */
import { singleStatementVariants } from './latency.js';
import { measureThroughput, type Op, type ThroughputPlan, type ThroughputSummary } from './stats.js';
import type { BenchEnv } from './setup.js';

export interface ThroughputResults {
  readonly results: Map<string, ThroughputSummary>;
  readonly plan: ThroughputPlan;
  readonly poolSize: number;
}

export async function runThroughput(env: BenchEnv, plan: ThroughputPlan): Promise<ThroughputResults> {
  const poolSize = env.appPool.options.max ?? 10;
  const variants = singleStatementVariants(env) as Array<[string, Op]>;
  return { results: await measureThroughput(variants, plan), plan, poolSize };
}
