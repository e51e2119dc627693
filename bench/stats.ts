/**
 * Measurement primitives shared by the benchmarks. The machine is noisy (2 cores shared by node and
 * PostgreSQL), so every comparison is made in rounds: each round runs every variant once, in a
 * rotated order, and a ratio is computed inside the round against the baseline measured in that
 * same round. Reported figures are medians over the rounds.
 */

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  if (sorted.length === 0) return Number.NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Rotates `items` by `by` places: round r runs the variants starting at r. */
export function rotate<T>(items: readonly T[], by: number): T[] {
  const k = by % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

export type Op = () => Promise<unknown>;

export interface LatencySummary {
  /** Median over rounds of each round's p50, in ms. */
  readonly p50: number;
  /** Median over rounds of each round's p95, in ms. */
  readonly p95: number;
  /** Median over rounds of (this variant's p50 / the baseline's p50 in the same round). */
  readonly ratio: number;
  /** Smallest and largest per-round ratio: the spread the noise left. */
  readonly ratioRange: readonly [number, number];
  readonly samples: number;
  /** Each round's p50, in round order (for ratios between any two variants). */
  readonly rounds: readonly number[];
}

export interface LatencyPlan {
  readonly rounds: number;
  /** Operations per variant per round. */
  readonly perRound: number;
  /** Operations per variant before the first round (not recorded). */
  readonly warmup: number;
}

/**
 * Sequential latency of each variant (one caller), in rounds. The first variant is the baseline.
 * Each round runs a block of `perRound` operations per variant, variants in rotated order.
 */
export async function measureLatency(variants: ReadonlyArray<[string, Op]>, plan: LatencyPlan): Promise<Map<string, LatencySummary>> {
  const baseline = variants[0]![0];
  for (const [, op] of variants) for (let i = 0; i < plan.warmup; i += 1) await op();
  const perRound = new Map<string, Array<{ p50: number; p95: number }>>(variants.map(([name]) => [name, []]));
  for (let round = 0; round < plan.rounds; round += 1) {
    for (const [name, op] of rotate(variants, round)) {
      const times: number[] = [];
      for (let i = 0; i < plan.perRound; i += 1) {
        const started = performance.now();
        await op();
        times.push(performance.now() - started);
      }
      times.sort((x, y) => x - y);
      perRound.get(name)!.push({ p50: percentile(times, 50), p95: percentile(times, 95) });
    }
  }
  const base = perRound.get(baseline)!;
  const out = new Map<string, LatencySummary>();
  for (const [name] of variants) {
    const rounds = perRound.get(name)!;
    const ratios = rounds.map((r, i) => r.p50 / base[i]!.p50);
    out.set(name, {
      p50: median(rounds.map((r) => r.p50)),
      p95: median(rounds.map((r) => r.p95)),
      ratio: median(ratios),
      ratioRange: [Math.min(...ratios), Math.max(...ratios)],
      samples: rounds.length * plan.perRound,
      rounds: rounds.map((r) => r.p50),
    });
  }
  return out;
}

export interface ThroughputSummary {
  /** Median over rounds of operations per second. */
  readonly opsPerSec: number;
  /** Median over rounds of (ops/s / baseline ops/s in the same round). */
  readonly ratio: number;
  readonly ratioRange: readonly [number, number];
  /** Median over rounds of the callers' p50 and p95 latency, in ms (includes waiting for the pool). */
  readonly p50: number;
  readonly p95: number;
  /** Each round's ops/s, in round order. */
  readonly rounds: readonly number[];
}

export interface ThroughputPlan {
  readonly rounds: number;
  readonly callers: number;
  /** Length of each variant's run per round. */
  readonly durationMs: number;
  readonly warmupMs: number;
}

/** `callers` concurrent loops calling `op` for `ms` milliseconds; ops/s and per-call latencies. */
export async function runFor(op: Op, callers: number, ms: number): Promise<{ opsPerSec: number; times: number[] }> {
  const times: number[] = [];
  const start = performance.now();
  const deadline = start + ms;
  const caller = async () => {
    while (performance.now() < deadline) {
      const started = performance.now();
      await op();
      times.push(performance.now() - started);
    }
  };
  await Promise.all(Array.from({ length: callers }, caller));
  return { opsPerSec: times.length / ((performance.now() - start) / 1000), times };
}

/** Throughput of each variant under `callers` concurrent callers, in rounds. The first variant is the baseline. */
export async function measureThroughput(
  variants: ReadonlyArray<[string, Op]>,
  plan: ThroughputPlan,
): Promise<Map<string, ThroughputSummary>> {
  const baseline = variants[0]![0];
  for (const [, op] of variants) await runFor(op, plan.callers, plan.warmupMs);
  const perRound = new Map<string, Array<{ ops: number; p50: number; p95: number }>>(variants.map(([name]) => [name, []]));
  for (let round = 0; round < plan.rounds; round += 1) {
    for (const [name, op] of rotate(variants, round)) {
      const { opsPerSec, times } = await runFor(op, plan.callers, plan.durationMs);
      times.sort((x, y) => x - y);
      perRound.get(name)!.push({ ops: opsPerSec, p50: percentile(times, 50), p95: percentile(times, 95) });
    }
  }
  const base = perRound.get(baseline)!;
  const out = new Map<string, ThroughputSummary>();
  for (const [name] of variants) {
    const rounds = perRound.get(name)!;
    const ratios = rounds.map((r, i) => r.ops / base[i]!.ops);
    out.set(name, {
      opsPerSec: median(rounds.map((r) => r.ops)),
      ratio: median(ratios),
      ratioRange: [Math.min(...ratios), Math.max(...ratios)],
      p50: median(rounds.map((r) => r.p50)),
      p95: median(rounds.map((r) => r.p95)),
      rounds: rounds.map((r) => r.ops),
    });
  }
  return out;
}

/** Median over rounds of x / y, for two variants measured in the same rounds. */
export function pairRatio(x: { rounds: readonly number[] }, y: { rounds: readonly number[] }): number {
  return median(x.rounds.map((value, i) => value / y.rounds[i]!));
}
