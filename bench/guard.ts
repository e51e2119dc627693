/**
 * SQL guard cost, without a database (the catalog is given by hand):
 * - cached: `guard.check` of a text seen before, including the per-execution comparison of the
 *   parameter the verdict names with the tenant (target ≤ 2 µs);
 * - first verdict: parse (libpg-query, WASM) + analysis of a three-table join with a CTE never
 *   seen before (target ≤ 150 µs);
 * - first verdict of joins of 3, 30 and 300 tables, each bound through a chain of tenant
 *   equalities (`JOIN t_k ON t_k.tenant_id = t_k-1.tenant_id AND ...`): the growth should be
 *   close to linear in the statement's size.
 * `tsx bench/guard.ts` prints the markdown; `tsx bench/guard.ts --json` prints the results as JSON:
 * bench/run.ts runs it that way (`benchGuardIsolated()`), in a process of its own, before any
 * database phase. The guard costs CPU only, so it is timed on a quiet machine and a fresh heap: run
 * in the bench's own process after the HTTP and throughput phases, the same first verdict measured
 * 241 µs where a standalone run measured 100–120 µs, which timed what those phases left behind
 * (their heap, PostgreSQL still vacuuming), not the guard.
 */
import { execFile } from 'node:child_process';
import os from 'node:os';
import { pathToFileURL } from 'node:url';
import { loadModule, parseSync } from 'libpg-query';
import { createQueryGuard } from '../src/guard/index.js';
import { countTokens } from '../src/guard/tokens.js';

const TENANT = '6f9619ff-8b86-4011-b42d-00c04fc964ff';

const JOIN_WITH_CTE = `WITH recent AS (
  SELECT o.id, o.tenant_id, o.customer_id FROM orders o
   WHERE o.tenant_id = $1 AND o.created_at > now() - interval '7 days')
SELECT c.name, r.id, i.sku
  FROM recent r
  JOIN customers c ON c.tenant_id = r.tenant_id AND c.id = r.customer_id
  JOIN items i ON i.tenant_id = $1 AND i.order_id = r.id
 ORDER BY c.name
 LIMIT `;

const CACHED = 'SELECT o.id, c.name FROM orders o JOIN customers c ON c.tenant_id = o.tenant_id AND c.id = o.customer_id WHERE o.tenant_id = $1 AND o.id = $2';

/** A join of `n` guarded tables, each bound through the previous one; `salt` makes the text new. */
export function chainedJoin(n: number, salt: number): string {
  let sql = 'SELECT a0.id FROM t0 a0';
  for (let i = 1; i < n; i += 1) sql += ` JOIN t${i} a${i} ON a${i}.tenant_id = a${i - 1}.tenant_id AND a${i}.id = a${i - 1}.ref`;
  return `${sql} WHERE a0.tenant_id = $1 LIMIT ${salt}`;
}

export const CHAIN_SIZES = [3, 30, 300] as const;

const countTokensOf = (text: string) => countTokens(text, Number.MAX_SAFE_INTEGER);

/** Shapes whose parse costs the most per token (left-deep operator chains, long CASE and IN lists, VALUES rows, joins). */
const WORST_SHAPES: ReadonlyArray<readonly [string, (n: number, salt: number) => string]> = [
  ['`1+1+...` operator chain', (n, salt) => `SELECT ${Array.from({ length: n }, () => '1').join('+')} + ${salt} FROM orders WHERE tenant_id = $1`],
  ['`a = 0 OR a = 1 OR ...`', (n, salt) => `SELECT * FROM orders WHERE tenant_id = $1 AND (${Array.from({ length: n }, (_, i) => `amount = ${i}`).join(' OR ')} OR amount = ${salt})`],
  ['`CASE WHEN ... THEN ...` ×n', (n, salt) => `SELECT CASE ${Array.from({ length: n }, (_, i) => `WHEN amount = ${i} THEN ${i}`).join(' ')} ELSE ${salt} END FROM orders WHERE tenant_id = $1`],
  ['`IN (0, 1, ...)` list', (n, salt) => `SELECT * FROM orders WHERE tenant_id = $1 AND id IN (${Array.from({ length: n }, (_, i) => i).join(', ')}, ${salt})`],
  ['`INSERT ... VALUES (...), ...`', (n, salt) => `INSERT INTO orders (tenant_id, id, item) VALUES ${Array.from({ length: n }, (_, i) => `($1, ${i}, 'x')`).join(', ')}, ($1, ${salt}, 'x')`],
  ['join chained through tenant equalities', (n, salt) => chainedJoin(Math.min(n, 120), salt)],
];

export interface GuardBench {
  /** Median ns per cached `check` (verdict lookup + parameter check). */
  readonly cachedNs: number;
  /** Median µs per first verdict of a three-table join with a CTE. */
  readonly firstJoinCteUs: number;
  /** Median µs per first verdict of a join of n chained tables, and of its parsing alone. */
  readonly chains: ReadonlyArray<{ readonly tables: number; readonly chars: number; readonly firstUs: number; readonly parseUs: number }>;
  /** First verdicts of the costliest shapes just under the default maxTokens, in ms. */
  readonly worst: ReadonlyArray<{ readonly shape: string; readonly chars: number; readonly tokens: number; readonly medianMs: number; readonly maxMs: number }>;
  readonly markdown: string;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Per-operation time of `fn` in `rounds` rounds of `perRound` calls, after a warm-up. */
function measure(rounds: number, perRound: number, fn: (i: number) => void): number[] {
  let i = 0;
  for (let w = 0; w < perRound; w += 1) fn(i++);
  const perOp: number[] = [];
  for (let r = 0; r < rounds; r += 1) {
    const started = process.hrtime.bigint();
    for (let k = 0; k < perRound; k += 1) fn(i++);
    perOp.push(Number(process.hrtime.bigint() - started) / perRound);
  }
  return perOp;
}

export async function benchGuard(options: { quick?: boolean } = {}): Promise<GuardBench> {
  const quick = options.quick ?? process.env.BENCH_QUICK === '1';
  await loadModule();
  const tables = [{ name: 'orders' }, { name: 'customers' }, { name: 'items' }, ...Array.from({ length: 300 }, (_, i) => ({ name: `t${i}` }))];
  const guard = await createQueryGuard({
    tables,
    cacheSize: 100_000,
    // The 30- and 300-table chains are past the default maxTokens (2000): raised to time them.
    maxTokens: 100_000,
  });
  for (const n of CHAIN_SIZES) {
    if (guard.inspect(chainedJoin(n, 0), [TENANT], TENANT).length !== 0) throw new Error(`bench/guard: the ${n}-table chain is not accepted`);
  }
  const values = [TENANT, 42];
  guard.check(CACHED, values, TENANT);
  // What is measured must be the real check: another tenant's value is refused.
  if (guard.inspect(CACHED, ['0e1d2c3b-4a59-4867-8766-554433221100', 42], TENANT).length !== 1) {
    throw new Error('bench/guard: the cached verdict does not check the parameter');
  }

  const cached = measure(quick ? 5 : 15, quick ? 50_000 : 200_000, () => guard.check(CACHED, values, TENANT));
  // The same text built anew on each call: the lookup then hashes the whole string every time.
  const [head, tail] = [CACHED.slice(0, 40), CACHED.slice(40)];
  const rebuilt = measure(quick ? 5 : 15, quick ? 50_000 : 200_000, (i) => guard.check(i < 0 ? '' : `${head}${tail}`, values, TENANT));
  // First verdicts on a guard with the default cache (1000 verdicts, evicting as new texts come, as
  // in production): on the 100k-entry cache above, which this loop would fill, the garbage collector
  // and the map's growth cost as much again as the analysis (measured: ~230 µs instead of ~130 µs).
  const fresh = await createQueryGuard({ tables, maxTokens: 100_000 });
  // Every text is new: a different LIMIT makes a cache miss, as a new statement would. Warmed up
  // first: the analysis's code reaches its optimised form only after a few thousand verdicts.
  measure(1, quick ? 500 : 3_000, (i) => fresh.check(`${JOIN_WITH_CTE}${1_000_000 + i}`, [TENANT], TENANT));
  const first = measure(quick ? 5 : 15, quick ? 200 : 1_000, (i) => fresh.check(`${JOIN_WITH_CTE}${i}`, [TENANT], TENANT));
  const parseOnly = measure(quick ? 5 : 15, quick ? 200 : 1_000, (i) => parseSync(`${JOIN_WITH_CTE}${i}`));

  let salt = 1;
  const chains = CHAIN_SIZES.map((tables) => {
    const perRound = Math.max(quick ? 2 : 5, Math.round((quick ? 600 : 3000) / tables));
    const rounds = quick ? 5 : 11;
    const firstRun = measure(rounds, perRound, () => fresh.check(chainedJoin(tables, salt++), [TENANT], TENANT));
    const parseRun = measure(rounds, perRound, () => parseSync(chainedJoin(tables, salt++)));
    return { tables, chars: chainedJoin(tables, 0).length, firstUs: median(firstRun) / 1000, parseUs: median(parseRun) / 1000 };
  });
  // The costliest shapes at the default limits (just under maxTokens): the longest a first verdict
  // can hold the event loop with the defaults. Each text new (a salt), as an attacker would send.
  const defaults = await createQueryGuard({ tables: [{ name: 'orders' }, ...Array.from({ length: 120 }, (_, i) => ({ name: `t${i}` }))] });
  const worst = WORST_SHAPES.map(([shape, build]) => {
    let n = 8;
    while (countTokensOf(build(n * 2, 0)) < 2000) n *= 2;
    let lo = n, hi = n * 2; // the largest n under the limit
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (countTokensOf(build(mid, 0)) < 2000) lo = mid;
      else hi = mid;
    }
    const sample = build(lo, 0);
    const refusedBy = defaults.inspect(sample, [TENANT], TENANT).find((v) => v.code === 'LBMT_GUARD_TOO_COMPLEX');
    if (refusedBy && /maxTokens/.test(refusedBy.reason)) throw new Error(`bench/guard: ${shape} at the limit was refused by maxTokens`);
    const times = measure(quick ? 5 : 11, quick ? 2 : 5, () => defaults.inspect(build(lo, salt++), [TENANT], TENANT));
    return { shape, chars: sample.length, tokens: countTokensOf(sample), medianMs: median(times) / 1e6, maxMs: Math.max(...times) / 1e6 };
  });
  const cachedNs = median(cached);
  const firstJoinCteUs = median(first) / 1000;
  const parseUs = median(parseOnly) / 1000;
  const row = (what: string, target: string, med: string, best: string, ok: boolean) => `| ${what} | ${target} | ${med} | ${best} | ${ok ? 'met' : 'NOT MET'} |`;
  const markdown = [
    '## SQL guard',
    '',
    `Node ${process.version}, ${os.cpus()[0]?.model ?? 'unknown CPU'} × ${os.cpus().length}, load average ${os.loadavg()[0]!.toFixed(1)} at the end. Median and best of ${cached.length} rounds.`,
    '',
    '| measurement | target | median | best | |',
    '|---|---|---|---|---|',
    row('cached verdict + parameter check (`guard.check`)', '≤ 2 µs', `${(cachedNs / 1000).toFixed(2)} µs`, `${(Math.min(...cached) / 1000).toFixed(2)} µs`, cachedNs <= 2000),
    row('… same, SQL text built anew on every call', '', `${(median(rebuilt) / 1000).toFixed(2)} µs`, `${(Math.min(...rebuilt) / 1000).toFixed(2)} µs`, median(rebuilt) <= 2000),
    row('first verdict, 3-table join with a CTE', '≤ 150 µs', `${firstJoinCteUs.toFixed(1)} µs`, `${(Math.min(...first) / 1000).toFixed(1)} µs`, firstJoinCteUs <= 150),
    row('… of which parsing (libpg-query `parseSync`)', '', `${parseUs.toFixed(1)} µs`, `${(Math.min(...parseOnly) / 1000).toFixed(1)} µs`, true),
    '',
    'First verdict of a join of n tables bound through a chain of tenant equalities (median):',
    '',
    '| tables | characters | first verdict | of which parsing | per table | vs 3 tables |',
    '|---|---|---|---|---|---|',
    ...chains.map(
      (c) =>
        `| ${c.tables} | ${c.chars} | ${c.firstUs.toFixed(1)} µs | ${c.parseUs.toFixed(1)} µs | ${(c.firstUs / c.tables).toFixed(1)} µs | ${(c.firstUs / chains[0]!.firstUs).toFixed(1)}× |`,
    ),
    '',
    'The longest a first verdict holds the event loop with the default limits: the costliest shapes just under `maxTokens` (2000), every text new (parse + analysis, or refusal by `maxAnalysisSteps`). Target: a few milliseconds (≤ 5 ms median).',
    '',
    '| shape | characters | tokens | median | worst of the rounds | |',
    '|---|---|---|---|---|---|',
    ...worst.map((w) => `| ${w.shape} | ${w.chars} | ${w.tokens} | ${w.medianMs.toFixed(2)} ms | ${w.maxMs.toFixed(2)} ms | ${w.medianMs <= 5 ? 'met' : 'NOT MET'} |`),
    '',
  ].join('\n');
  return { cachedNs, firstJoinCteUs, chains, worst, markdown };
}

/** `benchGuard()` in a child process of its own (see the header), its results read back as JSON. */
export function benchGuardIsolated(options: { quick?: boolean } = {}): Promise<GuardBench> {
  const env = { ...process.env, BENCH_QUICK: options.quick ? '1' : '0' };
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import=tsx', new URL(import.meta.url).pathname, '--json'], { env, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`bench/guard: the child process failed: ${stderr.trim() || error.message}`));
      else resolve(JSON.parse(stdout) as GuardBench);
    });
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await benchGuard();
  console.log(process.argv.includes('--json') ? JSON.stringify(result) : result.markdown);
}
