/**
 * The write gate of tenant moves (src/write-gate.ts) in every tenant prelude: the same one-round-trip
 * batch (prelude + one-row lookup, named statements, on a pooled client of the app role) with the
 * gate's shared advisory lock and without it. One caller (latency), and 16 callers on 8 connections
 * all of ONE tenant (throughput: every transaction takes the same lock, the worst case for the lock
 * manager's partition). Targets: latency ≤ 1.05×, throughput ≥ 0.95×.
 * `tsx bench/write-gate.ts` runs it alone on a small data set; bench/run.ts calls `runWriteGate()`.
 */
import { pathToFileURL } from 'node:url';
import type pg from 'pg';
import { quoteLiteral } from '../src/config.js';
import { PipelinedBatch } from '../src/pipeline.js';
import { WRITE_GATE_SQL } from '../src/write-gate.js';
import { measureLatency, measureThroughput, type LatencyPlan, type ThroughputPlan } from './stats.js';
import { setupBench, type BenchEnv } from './setup.js';

export const GATE_LATENCY_TARGET = 1.05;
export const GATE_THROUGHPUT_TARGET = 0.95;
const PLAIN = 'prelude without the gate';
const GATED = 'prelude with the write gate';

export interface WriteGateBench {
  readonly markdown: string;
  readonly targets: ReadonlyArray<{ target: string; measured: string; ok: boolean }>;
}

export async function runWriteGate(env: BenchEnv, latency: LatencyPlan, throughput: ThroughputPlan): Promise<WriteGateBench> {
  const setting = quoteLiteral(env.db.config.setting);
  const texts = { [PLAIN]: `SELECT set_config(${setting}, $1, true)`, [GATED]: `SELECT set_config(${setting}, $1, true), ${WRITE_GATE_SQL}` };
  const lookup = 'SELECT id, item, amount FROM orders WHERE id = $1';
  const op = (name: keyof typeof texts, pick: () => { tenant: string; id: string }) => async () => {
    const { tenant, id } = pick();
    const client = await env.appPool.connect();
    try {
      const result = await PipelinedBatch.run(client as unknown as pg.Client, [{ text: texts[name], values: [tenant] }], { text: lookup, values: [id] }, { prepare: 'all', tenantId: tenant });
      return result.rows.length;
    } finally {
      client.release();
    }
  };
  let i = 0;
  const anyTenant = () => env.lookups[i++ % env.lookups.length]!;
  const oneTenant = env.lookups.filter((l) => l.tenant === env.lookups[0]!.tenant);
  let k = 0;
  const sameTenant = () => oneTenant[k++ % oneTenant.length]!;
  const one: Array<[string, () => Promise<number>]> = [[PLAIN, op(PLAIN, anyTenant)], [GATED, op(GATED, anyTenant)]];
  const many: Array<[string, () => Promise<number>]> = [[PLAIN, op(PLAIN, sameTenant)], [GATED, op(GATED, sameTenant)]];
  for (const [name, run] of [...one, ...many]) {
    if ((await run()) !== 1) throw new Error(`${name} did not return the row: the bench would time nothing`);
  }
  const lat = await measureLatency(one, latency);
  const thr = await measureThroughput(many, throughput);
  const f = (n: number, d = 3) => n.toFixed(d);
  const l = lat.get(GATED)!;
  const tp = thr.get(GATED)!;
  const markdown = [
    '## Write gate of tenant moves in the prelude',
    '',
    `The tenant prelude and a one-row lookup in one round trip (named statements, PipelinedBatch on a pooled app-role client), with and without the gate's \`pg_try_advisory_xact_lock_shared\` (src/write-gate.ts). Latency: one caller, ${latency.rounds} rounds of ${latency.perRound} after ${latency.warmup} warm-up, rotated; ratio = median of per-round p50 ratios. Throughput: ${throughput.callers} callers on 8 connections, all one tenant (one lock for every transaction), ${throughput.rounds} rounds of ${throughput.durationMs} ms.`,
    '',
    '| variant | p50 ms (1 caller) | latency ratio | ops/s (16 callers, one tenant) | throughput ratio | per-round range |',
    '|---|---:|---:|---:|---:|---|',
    `| ${PLAIN} | ${f(lat.get(PLAIN)!.p50)} | 1.00× | ${Math.round(thr.get(PLAIN)!.opsPerSec)} | 1.00× | |`,
    `| ${GATED} | ${f(l.p50)} | ${f(l.ratio, 2)}× | ${Math.round(tp.opsPerSec)} | ${f(tp.ratio, 2)}× | latency ${f(l.ratioRange[0], 2)} – ${f(l.ratioRange[1], 2)}, throughput ${f(tp.ratioRange[0], 2)} – ${f(tp.ratioRange[1], 2)} |`,
    '',
  ].join('\n');
  return {
    markdown,
    targets: [
      { target: `write gate: p50 ≤ ${GATE_LATENCY_TARGET} × the prelude without it`, measured: `${f(l.ratio, 2)}×`, ok: l.ratio <= GATE_LATENCY_TARGET },
      { target: `write gate: throughput (16 callers, one tenant) ≥ ${GATE_THROUGHPUT_TARGET} × without it`, measured: `${f(tp.ratio, 2)}×`, ok: tp.ratio >= GATE_THROUGHPUT_TARGET },
    ],
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const env = await setupBench({ rows: 200_000, tenants: 200, bigShare: 0.3 }, (line) => console.log(line));
  try {
    const result = await runWriteGate(env, { rounds: 9, perRound: 300, warmup: 300 }, { rounds: 11, callers: 16, durationMs: 1500, warmupMs: 1000 });
    console.log(result.markdown);
    for (const target of result.targets) console.log(`${target.ok ? 'met' : 'NOT MET'}: ${target.target}: ${target.measured}`);
  } finally {
    await env.close();
  }
}
